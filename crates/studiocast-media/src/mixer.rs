//! Interface channels → the AmbiX bus, by role: an ambisonic input, spot
//! microphones as objects, a loudspeaker bed, a stereo pair. Everything is
//! set up once; [`BusMixer::mix`] allocates nothing.

use studiocast_spatial::encoder::{BedEncoder, Layout, ObjectEncoder, Position};

use crate::spec::{AudioSource, ChannelMap};
use crate::MediaError;

#[derive(Clone)]
pub struct BusMixer {
    k: usize,
    /// AmbiX channel c ← (interface channel, gain).
    ambisonic: Vec<(usize, f32)>,
    objects: Vec<(usize, ObjectEncoder)>,
    /// (first interface channel, encoder, speakers)
    beds: Vec<(usize, BedEncoder, usize)>,
}

impl BusMixer {
    /// From a device source spec (validated).
    pub fn from_source(src: &AudioSource) -> Result<Self, MediaError> {
        let order = src.order();
        let k = (order + 1) * (order + 1);
        let Some(ChannelMap {
            ambisonic,
            objects,
            bed,
            stereo,
            ..
        }) = src.channel_map()
        else {
            return Err(MediaError::Spec(
                "synthetic audio has no channel map".into(),
            ));
        };
        let mut m = BusMixer {
            k,
            ambisonic: Vec::new(),
            objects: Vec::new(),
            beds: Vec::new(),
        };
        if let Some(a) = ambisonic {
            let fmt = a
                .format()
                .ok_or_else(|| MediaError::Spec(format!("normalisation '{}'", a.normalisation)))?;
            let first = a.first_channel as usize - 1;
            m.ambisonic = fmt
                .to_ambix_map(order)?
                .into_iter()
                .map(|(s, g)| (first + s, g))
                .collect();
        }
        for o in objects {
            let mut enc = ObjectEncoder::new(order)?;
            enc.set_position(
                Position {
                    azimuth_deg: o.azimuth,
                    elevation_deg: o.elevation,
                    distance_m: 1.0,
                },
                10f64.powf(o.gain_db / 20.0) as f32,
            )?;
            enc.snap();
            m.objects.push((o.channel as usize - 1, enc));
        }
        if let Some(b) = bed {
            let layout: Layout = b.layout.parse()?;
            m.beds.push((
                b.first_channel as usize - 1,
                BedEncoder::new(layout, order)?,
                layout.channels(),
            ));
        }
        if let Some(s) = stereo {
            // A stereo pair is two adjacent-looking speakers at ±30°: encode
            // it as a stereo bed from its two channels.
            if s.right == s.left + 1 {
                m.beds.push((
                    s.left as usize - 1,
                    BedEncoder::new(Layout::Stereo, order)?,
                    2,
                ));
            } else {
                for (ch, az) in [(s.left, 30.0), (s.right, -30.0)] {
                    let mut enc = ObjectEncoder::new(order)?;
                    enc.set_position(
                        Position {
                            azimuth_deg: az,
                            elevation_deg: 0.0,
                            distance_m: 1.0,
                        },
                        1.0,
                    )?;
                    enc.snap();
                    m.objects.push((ch as usize - 1, enc));
                }
            }
        }
        Ok(m)
    }

    pub fn channels(&self) -> usize {
        self.k
    }

    /// `raw`: planar interface block (channel c at `[c * frames..]`);
    /// `bus`: planar AmbiX block, overwritten.
    pub fn mix(&mut self, raw: &[f32], frames: usize, bus: &mut [f32]) -> Result<(), MediaError> {
        bus[..self.k * frames].iter_mut().for_each(|v| *v = 0.0);
        let ch = |c: usize| raw.get(c * frames..(c + 1) * frames).unwrap_or(&[]);
        for (c, &(src, g)) in self.ambisonic.iter().enumerate() {
            for (d, x) in bus[c * frames..(c + 1) * frames].iter_mut().zip(ch(src)) {
                *d += x * g;
            }
        }
        for (src, enc) in &mut self.objects {
            let input = ch(*src);
            if input.len() == frames {
                enc.encode_add(input, &mut bus[..self.k * frames]);
            }
        }
        for (first, enc, n) in &self.beds {
            let mut refs: [&[f32]; 12] = [&[]; 12];
            for (i, r) in refs.iter_mut().enumerate().take(*n) {
                *r = ch(first + i);
            }
            enc.encode_add(&refs[..*n], &mut bus[..self.k * frames])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PipelineSpec;

    fn spec(audio_source: &str) -> PipelineSpec {
        let text = format!(
            "name = \"t\"\n[audio]\n{audio_source}\n[[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n"
        );
        PipelineSpec::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn every_role_lands_in_the_bus() {
        let s = spec(
            "[audio.source]\nkind = \"device\"\nhost = \"JACK\"\nchannels = 12\norder = 1\nstereo = { left = 1, right = 2 }\nbed = { first_channel = 3, layout = \"5.1\" }\n[[audio.source.object]]\nchannel = 9\nazimuth = 90\n",
        );
        let mut m = BusMixer::from_source(&s.audio.source).unwrap();
        assert_eq!(m.channels(), 4);
        let frames = 8;
        let mut bus = vec![0.0f32; 4 * frames];
        // Only the object's channel (9) carries signal: W and Y (left) rise.
        let mut raw = vec![0.0f32; 12 * frames];
        raw[8 * frames..9 * frames]
            .iter_mut()
            .for_each(|v| *v = 1.0);
        m.mix(&raw, frames, &mut bus).unwrap();
        assert!((bus[frames - 1] - 1.0).abs() < 1e-6, "W");
        assert!(
            (bus[2 * frames - 1] - 1.0).abs() < 1e-6,
            "Y for a source at +90°"
        );
        // Only the bed's Rs (channel 3 + 5 = 8, at -110°): Y goes negative.
        let mut raw = vec![0.0f32; 12 * frames];
        raw[7 * frames..8 * frames]
            .iter_mut()
            .for_each(|v| *v = 1.0);
        m.mix(&raw, frames, &mut bus).unwrap();
        assert!(bus[frames + 3] < -0.9, "Y for Rs: {}", bus[frames + 3]);
        // The stereo pair's left channel: W and positive Y.
        let mut raw = vec![0.0f32; 12 * frames];
        raw[..frames].iter_mut().for_each(|v| *v = 1.0);
        m.mix(&raw, frames, &mut bus).unwrap();
        assert!(bus[frames + 3] > 0.4 && bus[3] > 0.9);
    }

    #[test]
    fn bad_maps_are_rejected_with_the_reason() {
        for (src, want) in [
            ("channels = 4\n", "maps no channels"),
            ("channels = 4\nbed = { first_channel = 1, layout = \"5.1\" }\n", "bed channel 6"),
            ("channels = 4\nbed = { first_channel = 1, layout = \"9.1\" }\n", "9.1"),
            ("channels = 4\nstereo = { left = 1, right = 5 }\n", "stereo right channel 5"),
            ("channels = 4\n[[audio.source.object]]\nchannel = 2\nazimuth = 0\nelevation = 100\n", "elevation"),
        ] {
            let text = format!(
                "name = \"t\"\n[audio]\n[audio.source]\nkind = \"device\"\nhost = \"JACK\"\n{src}[[audio.rendition]]\nid = \"binaural\"\nname = \"B\"\nmix = \"binaural\"\ndefault = true\n"
            );
            let e = PipelineSpec::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }
}
