//! Rosters stored whole in the Freckle DB (a held run's snapshot, the raw roster an events run
//! starts from): JSON, zstd-compressed, written and read as streams so that a large district
//! never exists as one uncompressed text.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Compresses `value` as zstd JSON.
pub fn pack<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let mut encoder = zstd::Encoder::new(Vec::new(), 3)?;
    serde_json::to_writer(&mut encoder, value)?;
    encoder.finish()
}

/// Reads a value written by [`pack`].
pub fn unpack<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    let decoder = zstd::Decoder::new(bytes)?;
    Ok(serde_json::from_reader(std::io::BufReader::new(decoder))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Snapshot, Student};

    #[test]
    fn a_snapshot_round_trips() {
        let snapshot = Snapshot {
            students: vec![Student {
                id: "s1".into(),
                grade: Some("3".into()),
                ..Student::default()
            }],
            ..Snapshot::default()
        };
        let packed = pack(&snapshot).expect("pack");
        assert_eq!(unpack::<Snapshot>(&packed).expect("unpack"), snapshot);
    }
}
