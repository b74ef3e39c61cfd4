//! `Tile::parse_path` and `EntryBundle::parse_path` on arbitrary UTF-8.
//!
//! Properties: nothing panics; a parsed path re-renders to the same string (only
//! canonical spellings are accepted); the tile/bundle helpers are total on what
//! parses.
#![no_main]

use bonafide_core::merkle::{EntryBundle, Tile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tile) = Tile::parse_path(path) {
        assert_eq!(tile.path(), path);
        assert_eq!(tile.to_string(), path);
        assert_eq!(Tile::parse_path(&tile.path()).unwrap(), tile);
        assert_eq!(tile.byte_len(), usize::from(tile.width()) * 32);
        if let Some(indexes) = tile.stored_hash_indexes() {
            assert_eq!(indexes.len(), usize::from(tile.width()));
        }
        if let Some(bundle) = tile.entry_bundle() {
            assert_eq!(bundle.tile(), tile);
        }
        let _ = tile.belongs_to(tile.n().wrapping_mul(256));
    }
    if let Ok(bundle) = EntryBundle::parse_path(path) {
        assert_eq!(bundle.path(), path);
        assert_eq!(EntryBundle::parse_path(&bundle.path()).unwrap(), bundle);
        assert_eq!(bundle.tile().entry_bundle(), Some(bundle));
    }
});
