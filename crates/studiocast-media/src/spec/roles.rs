//! What each input channel carries, in a technician's words, for the
//! meters and the console: `W`, `Y`, `Z`, `X` (then the higher orders'
//! letters, `ACN n` past third order), `bed L`, `bed LFE`, `stereo L`, an
//! object's name (or `object 3`). Channels the map leaves out have none.

use super::{AudioSource, ChannelMap};

/// The traditional letters of the ambisonic components, in ACN order, up
/// to third order (Furse-Malham's names; ACN 4 is V, 8 is U).
const ACN_LETTERS: [&str; 16] = [
    "W", "Y", "Z", "X", "V", "T", "R", "S", "U", "Q", "O", "M", "K", "L", "N", "P",
];

fn acn_name(acn: usize) -> String {
    ACN_LETTERS
        .get(acn)
        .map_or_else(|| format!("ACN {acn}"), |s| (*s).to_string())
}

impl ChannelMap<'_> {
    /// The role of each interface channel, 1 to `channels`.
    pub fn roles(&self) -> Vec<Option<String>> {
        let mut out = vec![None; self.channels as usize];
        let mut set = |ch: u16, role: String| {
            if let Some(slot) = (ch as usize).checked_sub(1).and_then(|i| out.get_mut(i)) {
                slot.get_or_insert(role);
            }
        };
        if let Some(a) = self.ambisonic {
            let k = (a.order + 1) * (a.order + 1);
            for i in 0..k {
                // FuMa (first order only) runs W X Y Z.
                let name = if a.normalisation == "fuma" {
                    ["W", "X", "Y", "Z"]
                        .get(i)
                        .map_or_else(|| format!("FuMa {i}"), |s| s.to_string())
                } else {
                    acn_name(i)
                };
                set(a.first_channel.saturating_add(i as u16), name);
            }
        }
        if let Some(b) = self.bed {
            if let Ok(layout) = b.layout.parse::<studiocast_spatial::encoder::Layout>() {
                for (i, (name, _)) in layout.speakers().iter().enumerate() {
                    set(
                        b.first_channel.saturating_add(i as u16),
                        format!("bed {name}"),
                    );
                }
            }
        }
        if let Some(s) = self.stereo {
            set(s.left, "stereo L".into());
            set(s.right, "stereo R".into());
        }
        for (i, o) in self.objects.iter().enumerate() {
            let name = o
                .name
                .clone()
                .unwrap_or_else(|| format!("object {}", i + 1));
            set(o.channel, name);
        }
        out
    }
}

impl AudioSource {
    /// The role of each metered input: the interface's channels by the
    /// map, or the synthetic scene's bus channels by their ACN letters.
    pub fn channel_roles(&self) -> Vec<Option<String>> {
        match self.channel_map() {
            Some(m) => m.roles(),
            None => {
                let order = self.order();
                (0..(order + 1) * (order + 1))
                    .map(|c| Some(acn_name(c)))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::PipelineSpec;

    #[test]
    fn the_studio_preset_names_its_channels() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../pipelines/jack-16ch-3oa.toml"
        ))
        .unwrap();
        let spec: PipelineSpec = toml::from_str(&text).unwrap();
        let roles = spec.audio.source.channel_roles();
        assert_eq!(roles.len(), 16);
        let names: Vec<&str> = roles.iter().map(|r| r.as_deref().unwrap_or("-")).collect();
        assert_eq!(
            names,
            ["W", "Y", "Z", "X", "V", "T", "R", "S", "U", "Q", "O", "M", "K", "L", "N", "P"]
        );
    }

    #[test]
    fn beds_stereo_objects_and_gaps() {
        let text = r#"
            kind = "device"
            host = "JACK"
            channels = 14
            ambisonic = { first_channel = 1, order = 1, normalisation = "fuma" }
            bed = { first_channel = 5, layout = "5.1" }
            stereo = { left = 11, right = 12 }
            [[object]]
            channel = 13
            azimuth = 20
            name = "violin"
        "#;
        let src: crate::spec::AudioSource = toml::from_str(text).unwrap();
        let roles = src.channel_roles();
        let names: Vec<&str> = roles.iter().map(|r| r.as_deref().unwrap_or("-")).collect();
        assert_eq!(
            names,
            [
                "W", "X", "Y", "Z", "bed L", "bed R", "bed C", "bed LFE", "bed Ls", "bed Rs",
                "stereo L", "stereo R", "violin", "-"
            ]
        );
    }
}
