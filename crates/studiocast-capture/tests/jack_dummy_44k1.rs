//! Real capture through cpal from a JACK dummy server at 44100 Hz (no sound
//! hardware): a distinct sine on each of 16 channels arrives in the capture
//! ring on its own channel, with no overruns.

mod jack_common;

#[test]
fn capture_from_jack_dummy_server_at_44k1_with_16_channels() {
    jack_common::capture_at(44_100, 16);
}
