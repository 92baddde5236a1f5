//! Real capture through cpal from a JACK dummy server at 96000 Hz (no sound
//! hardware): a distinct sine on each of 64 channels arrives in the capture
//! ring on its own channel, with no overruns.

mod jack_common;

#[test]
fn capture_from_jack_dummy_server_at_96k_with_64_channels() {
    jack_common::capture_at(96_000, 64);
}
