//! Token Status Lists against the draft's published vectors
//! (`tests/data/status_list/draft_vectors.json`, checked with Python's zlib when
//! they were written down): every entry of each list decodes to the status the draft
//! lists, and what our encoder writes decodes to the same bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::Path;

use bonafide_core::status_list::{Bits, EncodedList, Status, StatusList};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    bits: u64,
    size: u64,
    set: HashMap<String, u8>,
    #[serde(default)]
    bytes_hex: Option<String>,
    lst: String,
}

fn vectors() -> Vec<Vector> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/status_list/draft_vectors.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str::<Vectors>(&text).unwrap().vectors
}

#[test]
fn every_entry_of_the_draft_s_lists_decodes_as_listed() {
    for v in vectors() {
        let encoded = EncodedList {
            bits: v.bits,
            lst: v.lst.clone(),
            aggregation_uri: None,
        };
        let list = StatusList::decode(&encoded).unwrap();
        assert_eq!(list.len(), v.size, "{}", v.name);
        let set: HashMap<u64, u8> = v
            .set
            .iter()
            .map(|(k, s)| (k.parse().unwrap(), *s))
            .collect();
        for idx in 0..v.size {
            let expected = set.get(&idx).copied().unwrap_or(0);
            assert_eq!(
                list.get(idx).unwrap(),
                Status::from_value(expected),
                "{} [{idx}]",
                v.name
            );
        }
        if let Some(hex) = &v.bytes_hex {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(list.as_bytes(), bytes.as_slice(), "{}", v.name);
        }
        // Built entry by entry and encoded by us, it decodes to the same list.
        let mut built = StatusList::new(Bits::new(v.bits).unwrap(), v.size).unwrap();
        for (idx, s) in &set {
            built.set(*idx, Status::from_value(*s)).unwrap();
        }
        assert_eq!(built, list, "{}", v.name);
        assert_eq!(
            StatusList::decode(&built.encode()).unwrap(),
            list,
            "{}",
            v.name
        );
    }
}
