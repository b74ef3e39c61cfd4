//! The audit log's Merkle tree: published RFC 6962 vectors (from `tests/data/merkle/`,
//! see its README), a naive RFC 6962 §2.1 reference for every size up to 2000, and
//! C2SP tlog-tiles paths.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use bonafide_core::merkle::{
    self, EntryBundle, Hash, HashReader, LogError, MAX_TREE_SIZE, Tile, check_record, check_tree,
    empty_tree_hash, leaf_hash, node_hash, prove_record, prove_tree, rfc9162,
    split_stored_hash_index, stored_hash_count, stored_hash_index, stored_hashes, tree_hash,
};
use serde::Deserialize;

// ---------------------------------------------------------------------------------
// Helpers

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hash(text: &str) -> Hash {
    Hash::try_from(unhex(text).as_slice()).unwrap()
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/merkle")
}

/// Stored hashes of a log with the given entries, appended one by one.
fn build(entries: &[Vec<u8>]) -> Vec<Hash> {
    let mut store: Vec<Hash> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let n = n as u64;
        assert_eq!(store.len() as u64, stored_hash_index(0, n));
        let new = stored_hashes(n, entry, &store).unwrap();
        store.extend(new);
        assert_eq!(store.len() as u64, stored_hash_count(n + 1));
    }
    store
}

/// Distinct entries `0, 1, 2, ...` as little-endian bytes.
fn entries(count: usize) -> Vec<Vec<u8>> {
    (0..count as u32)
        .map(|i| i.to_le_bytes().to_vec())
        .collect()
}

fn flip_bit(h: &Hash, bit: usize) -> Hash {
    let mut bytes = h.0;
    bytes[(bit / 8) % 32] ^= 1 << (bit % 8);
    Hash(bytes)
}

// ---------------------------------------------------------------------------------
// Naive reference: RFC 6962 §2.1, §2.1.1 and §2.1.2 written as the RFC states them,
// over leaf hashes.

/// Largest power of two strictly less than `n` (`n > 1`).
fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => empty_tree_hash(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]).
fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

/// PROOF(m, D[n]) for 0 < m < n.
fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
    subproof(m, d, true)
}

// ---------------------------------------------------------------------------------
// Published vectors

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tree {
    source: String,
    leaves: Vec<String>,
    roots: Vec<String>,
    nodes: Vec<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionCase {
    source: String,
    leaf_index: u64,
    tree_size: u64,
    leaf: String,
    root: String,
    proof: Vec<String>,
    error: Option<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    change: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyCase {
    source: String,
    old_size: u64,
    new_size: u64,
    old_root: String,
    new_root: String,
    proof: Vec<String>,
    error: Option<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    change: Option<String>,
}

fn read(name: &str) -> String {
    let path = data_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn tree() -> Tree {
    serde_json::from_str(&read("rfc6962_tree_8_leaves.json")).unwrap()
}

/// The 8-leaf tree's stored hashes.
fn tree_store() -> Vec<Hash> {
    let t = tree();
    let leaves: Vec<Vec<u8>> = t.leaves.iter().map(|l| unhex(l)).collect();
    build(&leaves)
}

fn error_name(e: &LogError) -> &'static str {
    match e {
        LogError::IndexOutOfRange { .. } => "index_out_of_range",
        LogError::SizeOrder { .. } => "size_order",
        LogError::ProofLength { .. } => "proof_length",
        LogError::ProofMismatch => "proof_mismatch",
        other => panic!("unexpected error {other:?}"),
    }
}

fn run_inclusion(name: &str) {
    let case: InclusionCase = serde_json::from_str(&read(name)).unwrap();
    assert!(!case.source.is_empty());
    assert_eq!(name.starts_with("fail_"), case.error.is_some(), "{name}");
    assert_eq!(case.derived_from.is_some(), case.change.is_some(), "{name}");
    let leaf = leaf_hash(&unhex(&case.leaf));
    let root = hash(&case.root);
    let proof: Vec<Hash> = case.proof.iter().map(|h| hash(h)).collect();

    let got = check_record(&proof, case.tree_size, &root, case.leaf_index, &leaf);
    let rfc = rfc9162::verify_inclusion(&proof, case.tree_size, &root, case.leaf_index, &leaf);
    assert_eq!(got.is_ok(), rfc.is_ok(), "{name}: {got:?} vs {rfc:?}");
    match &case.error {
        None => {
            assert_eq!(got, Ok(()), "{name}");
            // The generator reproduces the published proof.
            let store = tree_store();
            assert_eq!(
                prove_record(case.tree_size, case.leaf_index, &store).unwrap(),
                proof,
                "{name}"
            );
        }
        Some(want) => {
            let err = got.expect_err(name);
            assert_eq!(error_name(&err), want, "{name}: {err:?}");
        }
    }
}

fn run_consistency(name: &str) {
    let case: ConsistencyCase = serde_json::from_str(&read(name)).unwrap();
    assert!(!case.source.is_empty());
    assert_eq!(name.starts_with("fail_"), case.error.is_some(), "{name}");
    assert_eq!(case.derived_from.is_some(), case.change.is_some(), "{name}");
    let old_root = hash(&case.old_root);
    let new_root = hash(&case.new_root);
    let proof: Vec<Hash> = case.proof.iter().map(|h| hash(h)).collect();

    let got = check_tree(&proof, case.new_size, &new_root, case.old_size, &old_root);
    let rfc =
        rfc9162::verify_consistency(&proof, case.new_size, &new_root, case.old_size, &old_root);
    assert_eq!(got.is_ok(), rfc.is_ok(), "{name}: {got:?} vs {rfc:?}");
    match &case.error {
        None => {
            assert_eq!(got, Ok(()), "{name}");
            let store = tree_store();
            assert_eq!(
                prove_tree(case.new_size, case.old_size, &store).unwrap(),
                proof,
                "{name}"
            );
        }
        Some(want) => {
            let err = got.expect_err(name);
            assert_eq!(error_name(&err), want, "{name}: {err:?}");
        }
    }
}

fn run(name: &str) {
    let stem = name.strip_prefix("fail_").unwrap_or(name);
    if stem.starts_with("inclusion_") {
        run_inclusion(name);
    } else if stem.starts_with("consistency_") {
        run_consistency(name);
    } else {
        assert_eq!(name, "rfc6962_tree_8_leaves.json");
    }
}

#[test]
fn rfc6962_tree_8_leaves_roots_and_nodes() {
    let t = tree();
    assert!(t.source.contains("transparency-dev/merkle"));
    let store = tree_store();
    // Roots by size, the empty tree included.
    for (size, root) in t.roots.iter().enumerate() {
        assert_eq!(
            tree_hash(size as u64, &store).unwrap(),
            hash(root),
            "size {size}"
        );
    }
    assert_eq!(tree_hash(0, &store).unwrap(), empty_tree_hash());
    // Every perfect subtree sits at its stored hash index.
    for (level, row) in t.nodes.iter().enumerate() {
        for (n, node) in row.iter().enumerate() {
            let index = stored_hash_index(level as u8, n as u64);
            assert_eq!(store[index as usize], hash(node), "node ({level}, {n})");
        }
    }
    // And leaf hashes are SHA-256(0x00 ‖ input).
    for (leaf, node) in t.leaves.iter().zip(&t.nodes[0]) {
        assert_eq!(leaf_hash(&unhex(leaf)), hash(node));
    }
}

#[test]
fn inclusion_0_of_1() {
    run("inclusion_0_of_1.json");
}

#[test]
fn inclusion_0_of_8() {
    run("inclusion_0_of_8.json");
}

#[test]
fn inclusion_5_of_8() {
    run("inclusion_5_of_8.json");
}

#[test]
fn inclusion_2_of_3() {
    run("inclusion_2_of_3.json");
}

#[test]
fn inclusion_1_of_5() {
    run("inclusion_1_of_5.json");
}

#[test]
fn consistency_1_to_1() {
    run("consistency_1_to_1.json");
}

#[test]
fn consistency_1_to_8() {
    run("consistency_1_to_8.json");
}

#[test]
fn consistency_6_to_8() {
    run("consistency_6_to_8.json");
}

#[test]
fn consistency_2_to_5() {
    run("consistency_2_to_5.json");
}

#[test]
fn consistency_6_to_7() {
    run("consistency_6_to_7.json");
}

#[test]
fn fail_inclusion_5_of_8_wrong_root() {
    run("fail_inclusion_5_of_8_wrong_root.json");
}

#[test]
fn fail_inclusion_5_of_8_wrong_index() {
    run("fail_inclusion_5_of_8_wrong_index.json");
}

#[test]
fn fail_inclusion_5_of_8_truncated_proof() {
    run("fail_inclusion_5_of_8_truncated_proof.json");
}

#[test]
fn fail_inclusion_5_of_8_extra_element() {
    run("fail_inclusion_5_of_8_extra_element.json");
}

#[test]
fn fail_consistency_6_to_8_swapped_sizes() {
    run("fail_consistency_6_to_8_swapped_sizes.json");
}

#[test]
fn fail_consistency_6_to_8_wrong_old_root() {
    run("fail_consistency_6_to_8_wrong_old_root.json");
}

#[test]
fn fail_consistency_6_to_8_truncated_proof() {
    run("fail_consistency_6_to_8_truncated_proof.json");
}

#[test]
fn fail_consistency_6_to_8_extra_element() {
    run("fail_consistency_6_to_8_extra_element.json");
}

/// Every data file runs, including ones added later without a named test.
#[test]
fn every_data_file() {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 60, "{names:?}");
    assert!(names.iter().filter(|n| n.starts_with("fail_")).count() >= 50);
    for name in &names {
        run(name);
    }
}

// ---------------------------------------------------------------------------------
// Against the naive reference

/// Checks one inclusion proof: equal to the RFC's PATH, accepted by both verifiers,
/// and rejected by both after any single-bit change to the proof, leaf or root.
/// Changed indexes and sizes must be judged alike by both verifiers.
fn check_inclusion_against_reference(store: &[Hash], leaves: &[Hash], index: usize, size: usize) {
    let (i, s) = (index as u64, size as u64);
    let got = prove_record(s, i, store).unwrap();
    let d = &leaves[..size];
    assert_eq!(got, path(index, d), "PATH({index}, D[{size}])");
    check_inclusion_proof(&got, leaves, index, size, &mth(d));
}

fn check_inclusion_proof(p: &[Hash], leaves: &[Hash], index: usize, size: usize, root: &Hash) {
    let (i, s) = (index as u64, size as u64);
    let leaf = &leaves[index];
    assert_eq!(
        check_record(p, s, root, i, leaf),
        Ok(()),
        "({index}, {size})"
    );
    assert_eq!(rfc9162::verify_inclusion(p, s, root, i, leaf), Ok(()));

    let both_reject = |p: &[Hash], root: &Hash, leaf: &Hash, what: &str| {
        assert!(
            check_record(p, s, root, i, leaf).is_err(),
            "{what} ({index}, {size})"
        );
        assert!(
            rfc9162::verify_inclusion(p, s, root, i, leaf).is_err(),
            "{what}"
        );
    };
    for at in 0..p.len() {
        let mut bad = p.to_vec();
        bad[at] = flip_bit(&bad[at], (at * 37 + index) % 256);
        both_reject(&bad, root, leaf, "flipped proof bit");
    }
    both_reject(p, &flip_bit(root, index % 256), leaf, "flipped root bit");
    both_reject(p, root, &flip_bit(leaf, size % 256), "flipped leaf bit");
    if let Some((_, short)) = p.split_last() {
        both_reject(short, root, leaf, "truncated");
    }
    let mut long = p.to_vec();
    long.push(*root);
    both_reject(&long, root, leaf, "extended");

    // Other positions and sizes: a root commits to a size only through the
    // checkpoint, so some of these verify; the two algorithms must simply agree.
    for (oi, os) in [
        (i.wrapping_sub(1), s),
        (i + 1, s),
        (i ^ 2, s),
        (i, s + 1),
        (i, s - 1),
        (i, s * 2),
        (i, s / 2),
    ] {
        let a = check_record(p, os, root, oi, leaf);
        let b = rfc9162::verify_inclusion(p, os, root, oi, leaf);
        assert_eq!(
            a.is_ok(),
            b.is_ok(),
            "({oi}, {os}) from ({index}, {size}): {a:?} {b:?}"
        );
        if oi >= os {
            assert_eq!(
                a,
                Err(LogError::IndexOutOfRange {
                    index: oi,
                    size: os
                })
            );
        }
    }
}

/// Checks one consistency proof like [`check_inclusion_against_reference`].
fn check_consistency_against_reference(store: &[Hash], leaves: &[Hash], old: usize, new: usize) {
    let got = prove_tree(new as u64, old as u64, store).unwrap();
    let want = if old == 0 || old == new {
        Vec::new()
    } else {
        proof(old, &leaves[..new])
    };
    assert_eq!(got, want, "PROOF({old}, D[{new}])");
    let roots = (mth(&leaves[..old]), mth(&leaves[..new]));
    check_consistency_proof(&got, roots, old, new);
}

/// `roots` are the (old, new) tree hashes.
fn check_consistency_proof(p: &[Hash], roots: (Hash, Hash), old: usize, new: usize) {
    let (o, n) = (old as u64, new as u64);
    let (old_root, new_root) = roots;
    assert_eq!(
        check_tree(p, n, &new_root, o, &old_root),
        Ok(()),
        "({old}, {new})"
    );
    assert_eq!(
        rfc9162::verify_consistency(p, n, &new_root, o, &old_root),
        Ok(())
    );

    let both_reject = |p: &[Hash], nr: &Hash, or: &Hash, what: &str| {
        assert!(
            check_tree(p, n, nr, o, or).is_err(),
            "{what} ({old}, {new})"
        );
        assert!(
            rfc9162::verify_consistency(p, n, nr, o, or).is_err(),
            "{what} ({old}, {new})"
        );
    };
    for at in 0..p.len() {
        let mut bad = p.to_vec();
        bad[at] = flip_bit(&bad[at], (at * 53 + old) % 256);
        both_reject(&bad, &new_root, &old_root, "flipped proof bit");
    }
    // From the empty tree, anything is consistent: no new root is wrong then.
    if old > 0 {
        both_reject(
            p,
            &flip_bit(&new_root, new % 256),
            &old_root,
            "flipped new root",
        );
    }
    both_reject(
        p,
        &new_root,
        &flip_bit(&old_root, old % 256),
        "flipped old root",
    );
    if let Some((_, short)) = p.split_last() {
        both_reject(short, &new_root, &old_root, "truncated");
    }
    let mut long = p.to_vec();
    long.push(new_root);
    both_reject(&long, &new_root, &old_root, "extended");
    if old < new {
        assert_eq!(
            check_tree(p, o, &old_root, n, &new_root),
            Err(LogError::SizeOrder { old: n, new: o })
        );
        assert!(rfc9162::verify_consistency(p, o, &old_root, n, &new_root).is_err());
    }

    for (oo, on) in [
        (o.saturating_sub(1), n),
        (o + 1, n),
        (o ^ 2, n),
        (o, n + 1),
        (o, n.saturating_sub(1)),
        (o, n * 2),
        (o, n / 2),
    ] {
        let a = check_tree(p, on, &new_root, oo, &old_root);
        let b = rfc9162::verify_consistency(p, on, &new_root, oo, &old_root);
        assert_eq!(
            a.is_ok(),
            b.is_ok(),
            "({oo}, {on}) from ({old}, {new}): {a:?} {b:?}"
        );
    }
}

fn leaf_hashes(entries: &[Vec<u8>]) -> Vec<Hash> {
    entries.iter().map(|e| leaf_hash(e)).collect()
}

#[test]
fn tree_hash_matches_naive_mth_for_every_size_to_2000() {
    let entries = entries(2000);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    for size in 0..=2000usize {
        assert_eq!(
            tree_hash(size as u64, &store).unwrap(),
            mth(&leaves[..size]),
            "size {size}"
        );
    }
}

#[test]
fn every_stored_hash_is_the_mth_of_its_subtree() {
    let entries = entries(700);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    for (index, stored) in store.iter().enumerate() {
        let (level, n) = split_stored_hash_index(index as u64);
        let lo = (n << level) as usize;
        let hi = ((n + 1) << level) as usize;
        assert_eq!(
            *stored,
            mth(&leaves[lo..hi]),
            "index {index} = ({level}, {n})"
        );
    }
}

#[test]
fn inclusion_proofs_exhaustive_to_64() {
    let entries = entries(64);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    for size in 1..=64 {
        for index in 0..size {
            check_inclusion_against_reference(&store, &leaves, index, size);
        }
    }
}

#[test]
fn consistency_proofs_exhaustive_to_64() {
    let entries = entries(64);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    for new in 1..=64 {
        for old in 0..=new {
            check_consistency_against_reference(&store, &leaves, old, new);
        }
    }
}

/// A few positions in `0..size`: both ends, the middle, powers of two and a
/// deterministic pseudo-random one.
fn samples(size: usize, seed: usize) -> Vec<usize> {
    let mut out = vec![0, 1, size / 3, size / 2, size - 2, size - 1];
    let mut p = 2;
    while p < size {
        if p % 3 == seed % 3 {
            out.push(p);
        }
        p *= 2;
    }
    out.push((seed.wrapping_mul(2_654_435_761) >> 7) % size);
    out.retain(|&x| x < size);
    out.sort_unstable();
    out.dedup();
    out
}

#[test]
fn sampled_proofs_to_2000() {
    let entries = entries(2000);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    for size in 65..=2000usize {
        // The naive PATH/PROOF cost O(size) each: compare with them on every 37th
        // size; on the others check the proofs verify and resist tampering.
        let reference = size.is_multiple_of(37) || size.is_power_of_two() || size == 2000;
        let root = tree_hash(size as u64, &store).unwrap();
        for index in samples(size, size) {
            if reference {
                check_inclusion_against_reference(&store, &leaves, index, size);
            } else {
                let p = prove_record(size as u64, index as u64, &store).unwrap();
                check_inclusion_proof(&p, &leaves, index, size, &root);
            }
        }
        for old in samples(size, size + 1) {
            if reference {
                check_consistency_against_reference(&store, &leaves, old, size);
            } else {
                let p = prove_tree(size as u64, old as u64, &store).unwrap();
                // tree_hash equals the naive MTH for every size (tested above).
                let old_root = tree_hash(old as u64, &store).unwrap();
                check_consistency_proof(&p, (old_root, root), old, size);
            }
        }
    }
}

/// The verifiers agree on proofs made for other positions, as well as their own.
#[test]
fn verifiers_agree_on_mismatched_proofs() {
    let entries = entries(24);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    let roots: Vec<Hash> = (0..=24).map(|s| mth(&leaves[..s])).collect();
    let mut proofs = Vec::new();
    for size in 1..=24u64 {
        for index in 0..size {
            proofs.push(prove_record(size, index, &store).unwrap());
        }
    }
    for p in &proofs {
        for size in 1..=24u64 {
            for index in 0..size {
                let root = &roots[size as usize];
                let leaf = &leaves[index as usize];
                let a = check_record(p, size, root, index, leaf);
                let b = rfc9162::verify_inclusion(p, size, root, index, leaf);
                assert_eq!(a.is_ok(), b.is_ok(), "({index}, {size}) {p:?}");
            }
        }
    }
    for new in 1..=24u64 {
        for old in 1..new {
            let p = prove_tree(new, old, &store).unwrap();
            for n2 in 1..=24u64 {
                for o2 in 0..=n2 {
                    let (nr, or) = (&roots[n2 as usize], &roots[o2 as usize]);
                    let a = check_tree(&p, n2, nr, o2, or);
                    let b = rfc9162::verify_consistency(&p, n2, nr, o2, or);
                    assert_eq!(
                        a.is_ok(),
                        b.is_ok(),
                        "({o2}, {n2}) with proof ({old}, {new})"
                    );
                    assert_eq!(
                        a.is_ok(),
                        (o2, n2) == (old, new),
                        "({o2}, {n2}) ({old}, {new})"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Edge cases and errors

#[test]
fn empty_and_trivial_cases() {
    let store: Vec<Hash> = Vec::new();
    let empty = empty_tree_hash();
    assert_eq!(
        empty.to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(tree_hash(0, &store), Ok(empty));
    assert_eq!(
        prove_record(0, 0, &store),
        Err(LogError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(prove_tree(0, 0, &store), Ok(vec![]));
    assert_eq!(
        prove_tree(1, 2, &store),
        Err(LogError::SizeOrder { old: 2, new: 1 })
    );

    let some = leaf_hash(b"x");
    for check in [check_tree, rfc9162::verify_consistency] {
        // The empty tree is a prefix of every tree, under its fixed root only.
        assert_eq!(check(&[], 0, &empty, 0, &empty), Ok(()));
        assert_eq!(check(&[], 5, &some, 0, &empty), Ok(()));
        assert_eq!(check(&[], 5, &some, 0, &some), Err(LogError::ProofMismatch));
        // A tree is consistent with itself under the same root, with no proof.
        assert_eq!(check(&[], 5, &some, 5, &some), Ok(()));
        assert_eq!(
            check(&[], 5, &some, 5, &empty),
            Err(LogError::ProofMismatch)
        );
        assert_eq!(
            check(&[some], 5, &some, 5, &some),
            Err(LogError::ProofLength {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            check(&[], 1, &some, 2, &some),
            Err(LogError::SizeOrder { old: 2, new: 1 })
        );
        // Needs a proof, got none.
        assert!(check(&[], 6, &some, 5, &some).is_err());
    }
    for check in [check_record, rfc9162::verify_inclusion] {
        assert_eq!(
            check(&[], 0, &empty, 0, &empty),
            Err(LogError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(check(&[], 1, &some, 0, &some), Ok(()));
        assert!(check(&[], 1, &empty, 0, &some).is_err());
    }
}

#[test]
fn huge_sizes_do_not_overflow_the_verifiers() {
    let h = leaf_hash(b"x");
    // The longest proofs of u64 sizes: 64 hashes of inclusion, 65 of consistency
    // (old = 3, new = 2^64 - 1: the seed leaf plus a 64-hash path).
    let proof = vec![h; 65];
    for size in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1] {
        for index in [0, 1, size / 2, size - 1] {
            let a = check_record(&proof, size, &h, index, &h);
            let b = rfc9162::verify_inclusion(&proof, size, &h, index, &h);
            assert!(a.is_err() && b.is_err());
            let len = merkle::inclusion_proof_len(index, size);
            let a = check_record(&proof[..len], size, &h, index, &h);
            let b = rfc9162::verify_inclusion(&proof[..len], size, &h, index, &h);
            assert_eq!(a, Err(LogError::ProofMismatch));
            assert_eq!(b, Err(LogError::ProofMismatch));
        }
        for old in [1, 2, 3, size / 2, size - 1] {
            let len = merkle::consistency_proof_len(old, size);
            assert!(len <= 65, "{old} {size} {len}");
            let a = check_tree(&proof[..len], size, &h, old, &h);
            let b = rfc9162::verify_consistency(&proof[..len], size, &h, old, &h);
            assert!(a.is_err() && b.is_err(), "{old} {size}: {a:?} {b:?}");
        }
    }
}

#[test]
fn generators_refuse_trees_beyond_the_limit() {
    let store: Vec<Hash> = Vec::new();
    let too_big = MAX_TREE_SIZE + 1;
    assert_eq!(
        tree_hash(too_big, &store),
        Err(LogError::TreeTooLarge(too_big))
    );
    assert_eq!(
        prove_record(too_big, 0, &store),
        Err(LogError::TreeTooLarge(too_big))
    );
    assert_eq!(
        prove_tree(too_big, 1, &store),
        Err(LogError::TreeTooLarge(too_big))
    );
    assert_eq!(
        stored_hashes(MAX_TREE_SIZE, b"x", &store),
        Err(LogError::TreeTooLarge(too_big))
    );
    // Within the limit the index math is only a question of what the store holds.
    assert!(matches!(
        tree_hash(MAX_TREE_SIZE, &store),
        Err(LogError::MissingHash(_))
    ));
}

/// A reader that breaks its contract by returning one hash too few.
#[derive(Debug)]
struct ShortReader(Vec<Hash>);

impl HashReader for ShortReader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        let mut out = self.0.read_hashes(indexes)?;
        out.pop();
        Ok(out)
    }
}

/// A reader whose storage fails.
#[derive(Debug)]
struct FailingReader;

impl HashReader for FailingReader {
    fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, LogError> {
        Err(LogError::Reader("disk on fire".into()))
    }
}

#[test]
fn reader_failures_are_reported() {
    let store = build(&entries(10));
    assert_eq!(
        tree_hash(11, &store),
        Err(LogError::MissingHash(stored_hash_index(0, 10)))
    );
    let short = ShortReader(store.clone());
    assert_eq!(
        tree_hash(10, &short),
        Err(LogError::ShortRead { wanted: 2, got: 1 })
    );
    assert!(matches!(
        prove_record(10, 3, &short),
        Err(LogError::ShortRead { .. })
    ));
    assert!(matches!(
        prove_tree(10, 3, &short),
        Err(LogError::ShortRead { .. })
    ));
    assert!(matches!(
        stored_hashes(9, b"x", &short),
        Err(LogError::ShortRead { .. })
    ));
    let err = tree_hash(10, &FailingReader).unwrap_err();
    assert_eq!(err, LogError::Reader("disk on fire".into()));
    assert_eq!(err.to_string(), "hash storage failed: disk on fire");
    // The empty tree reads nothing at all.
    assert_eq!(tree_hash(0, &FailingReader), Ok(empty_tree_hash()));
    // The leaf needs no earlier hash when it completes no subtree.
    assert_eq!(
        stored_hashes(0, b"x", &FailingReader),
        Ok(vec![leaf_hash(b"x")])
    );
}

#[test]
fn hash_text_forms() {
    let t = tree();
    let root = hash(&t.roots[8]);
    // transparency-dev/merkle testdata/consistency/1/happy-path.json spells this root
    // in base64.
    assert_eq!(
        root.to_string(),
        "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    );
    assert_eq!(Hash::from_base64(&root.to_base64()), Ok(root));
    assert_eq!(format!("{root:?}"), "Hash(5dc9da79a706…)");
    for bad in [
        "",
        "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg",
        "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=",
        "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=",
        "AAAA",
    ] {
        assert_eq!(Hash::from_base64(bad), Err(LogError::BadHash), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------
// Tiles (c2sp.org/tlog-tiles)

#[test]
fn tile_paths_follow_the_spec_examples() {
    let t = Tile::new(0, 1_234_067, 256).unwrap();
    assert_eq!(t.path(), "tile/0/x001/x234/067");
    assert!(!t.is_partial());
    assert_eq!(t.byte_len(), 8192);
    let p = Tile::new(2, 1_234_067, 112).unwrap();
    assert_eq!(p.path(), "tile/2/x001/x234/067.p/112");
    assert_eq!(p.to_string(), p.path());
    assert_eq!(Tile::new(63, 0, 1).unwrap().path(), "tile/63/000.p/1");
    let b = EntryBundle::new(1_234_067, 256).unwrap();
    assert_eq!(b.path(), "tile/entries/x001/x234/067");
    assert_eq!(
        EntryBundle::new(5, 17).unwrap().path(),
        "tile/entries/005.p/17"
    );
    assert_eq!(t.entry_bundle(), Some(b));
    assert_eq!(b.tile(), t);
    assert_eq!(p.entry_bundle(), None);
}

#[test]
fn tile_paths_round_trip() {
    let ns = [
        0u64,
        1,
        999,
        1000,
        1001,
        999_999,
        1_000_000,
        1_234_067,
        u64::MAX / 256,
        u64::MAX - 1,
        u64::MAX,
    ];
    for level in [0u8, 1, 2, 7, 9, 10, 63] {
        for n in ns {
            for width in [1u16, 2, 9, 10, 99, 100, 255, 256] {
                let t = Tile::new(level, n, width).unwrap();
                assert_eq!(Tile::parse_path(&t.path()), Ok(t), "{}", t.path());
                if level == 0 {
                    let b = EntryBundle::new(n, width).unwrap();
                    assert_eq!(EntryBundle::parse_path(&b.path()), Ok(b), "{}", b.path());
                }
            }
        }
    }
    assert_eq!(
        Tile::new(0, u64::MAX, 255).unwrap().path(),
        "tile/0/x018/x446/x744/x073/x709/x551/615.p/255"
    );
}

#[test]
fn tile_new_checks_level_and_width() {
    assert_eq!(
        Tile::new(64, 0, 256),
        Err(LogError::BadTile {
            level: 64,
            width: 256
        })
    );
    assert_eq!(
        Tile::new(0, 0, 0),
        Err(LogError::BadTile { level: 0, width: 0 })
    );
    assert_eq!(
        Tile::new(0, 0, 257),
        Err(LogError::BadTile {
            level: 0,
            width: 257
        })
    );
    assert!(EntryBundle::new(0, 0).is_err());
    assert!(EntryBundle::new(0, 257).is_err());
}

#[test]
fn malformed_tile_paths_are_rejected() {
    let bad = [
        "",
        "tile",
        "tile/",
        "tile/0",
        "tile/0/",
        "/tile/0/000",
        "TILE/0/000",
        "tile//0/000",
        "tile/0//000",
        "tile/0/000/",
        // Go's older tile/<H>/<L>/<N> form, with the height in front.
        "tile/8/0/x001/234",
        "tile/8/0/000",
        // Level: 0..=63, no leading zeros, no signs.
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/255/000",
        "tile/-1/000",
        "tile/+1/000",
        "tile/ 1/000",
        "tile/x/000",
        // Index: 3-digit groups, `x` on all but the last, no leading zero group.
        "tile/0/0",
        "tile/0/00",
        "tile/0/0000",
        "tile/0/x000",
        "tile/0/x001",
        "tile/0/001/234",
        "tile/0/x001/x234",
        "tile/0/x1/234",
        "tile/0/x0001/234",
        "tile/0/x000/001",
        "tile/0/x000/x001/234",
        "tile/0/X001/234",
        "tile/0/xx01/234",
        "tile/0/x001/23a",
        "tile/0/x001/-23",
        "tile/0/x001/+23",
        "tile/0/ 01",
        "tile/0/01 ",
        "tile/0/\u{0660}\u{0660}\u{0660}",
        // Path traversal and friends.
        "tile/0/../000",
        "tile/0/x001/../234",
        "tile/../0/000",
        "tile/0/./000",
        "tile/0/000/..",
        "tile/0/000%2f001",
        // Too large for u64 (max x018/x446/x744/x073/x709/x551/615).
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x999/x999/x999/x999/x999/x999/999",
        "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
        "tile/0/x000/x000/x000/x000/x000/x000/x000/x000/x000/x000/x000/000",
        // Partial width: 1..=255, no leading zeros, only after the last group.
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/01",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.p/1/",
        "tile/0/000.p/1.p/2",
        "tile/0/000.p/+1",
        "tile/0/x001.p/1/234",
        "tile/0/000.P/1",
        "tile/0/000.q/1",
        "tile/0/000p/1",
        // An entry bundle is not a hash tile.
        "tile/entries/000",
    ];
    for path in bad {
        assert!(
            matches!(Tile::parse_path(path), Err(LogError::BadTilePath(_))),
            "{path:?}: {:?}",
            Tile::parse_path(path)
        );
    }
    let bad_entries = [
        "tile/entries",
        "tile/entries/",
        "tile/entries/0",
        "tile/entries/x000/001",
        "tile/entries/001/234",
        "tile/entries/000.p/256",
        "tile/entries/000.p/0",
        "tile/entries/../000",
        "tile/0/000",
        "tile/entries/x018/x446/x744/x073/x709/x551/616",
    ];
    for path in bad_entries {
        assert!(
            matches!(EntryBundle::parse_path(path), Err(LogError::BadTilePath(_))),
            "{path:?}: {:?}",
            EntryBundle::parse_path(path)
        );
    }
    // Overlong input is refused before it is looked at.
    let long = format!("tile/0/{}000", "x000/".repeat(100));
    assert_eq!(
        Tile::parse_path(&long),
        Err(LogError::BadTilePath("too long"))
    );
}

#[test]
fn tiles_for_size_follow_the_spec_examples() {
    // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
    // partial level 0 tile of width 112, one full level 1 tile, one partial level 1
    // tile of width 17, and one partial level 2 tile of width 1."
    let tiles: Vec<Tile> = merkle::tiles_for_size(70_000).collect();
    let level = |l: u8| -> Vec<Tile> { tiles.iter().filter(|t| t.level() == l).copied().collect() };
    let l0 = level(0);
    assert_eq!(l0.len(), 274);
    assert!(
        l0[..273]
            .iter()
            .enumerate()
            .all(|(n, t)| t.n() == n as u64 && !t.is_partial())
    );
    assert_eq!(l0[273], Tile::new(0, 273, 112).unwrap());
    assert_eq!(
        level(1),
        vec![Tile::new(1, 0, 256).unwrap(), Tile::new(1, 1, 17).unwrap()]
    );
    assert_eq!(level(2), vec![Tile::new(2, 0, 1).unwrap()]);
    assert_eq!(tiles.len(), 277);
    assert_eq!(
        merkle::partial_tiles(70_000),
        vec![
            Tile::new(0, 273, 112).unwrap(),
            Tile::new(1, 1, 17).unwrap(),
            Tile::new(2, 0, 1).unwrap()
        ]
    );

    // "a tree of size 256 will be represented by a full level 0 tile and a partial
    // level 1 tile of width 1."
    assert_eq!(
        merkle::tiles_for_size(256).collect::<Vec<_>>(),
        vec![Tile::new(0, 0, 256).unwrap(), Tile::new(1, 0, 1).unwrap()]
    );
    assert_eq!(merkle::tiles_for_size(0).count(), 0);
    assert_eq!(
        merkle::tiles_for_size(1).collect::<Vec<_>>(),
        vec![Tile::new(0, 0, 1).unwrap()]
    );
    // The largest tree reaches level 7 and no further.
    assert_eq!(
        merkle::partial_tiles(u64::MAX).last(),
        Some(&Tile::new(7, 0, 255).unwrap())
    );

    for size in [
        1u64, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, 70_000,
    ] {
        for t in merkle::tiles_for_size(size) {
            assert!(t.belongs_to(size), "{t} for {size}");
            // A level-0 partial tile is replaced by the next size's.
            if t.level() == 0 && t.is_partial() {
                assert!(!t.belongs_to(size + 1), "{t} for {}", size + 1);
            }
        }
        assert!(!Tile::new(0, size, 256).unwrap().belongs_to(size));
    }
}

#[test]
fn tile_hashes_are_the_stored_hashes_of_their_level() {
    let entries = entries(600);
    let store = build(&entries);
    let leaves = leaf_hashes(&entries);
    let tiles: Vec<Tile> = merkle::tiles_for_size(600).collect();
    assert_eq!(
        tiles,
        vec![
            Tile::new(0, 0, 256).unwrap(),
            Tile::new(0, 1, 256).unwrap(),
            Tile::new(0, 2, 88).unwrap(),
            Tile::new(1, 0, 2).unwrap(),
        ]
    );
    for t in &tiles[..3] {
        let indexes = t.stored_hash_indexes().unwrap();
        let hashes = store.read_hashes(&indexes).unwrap();
        let first = (t.n() * 256) as usize;
        assert_eq!(hashes, leaves[first..first + usize::from(t.width())], "{t}");
    }
    // Level 1 holds the roots of full level-0 tiles.
    let hashes = store
        .read_hashes(&tiles[3].stored_hash_indexes().unwrap())
        .unwrap();
    assert_eq!(hashes, vec![mth(&leaves[..256]), mth(&leaves[256..512])]);
    // Tiles of trees beyond the limit have no stored indexes.
    assert_eq!(
        Tile::new(0, u64::MAX, 256).unwrap().stored_hash_indexes(),
        None
    );
    assert_eq!(Tile::new(8, 0, 1).unwrap().stored_hash_indexes(), None);
}

// ---------------------------------------------------------------------------------
// Frontier and prefetched reads (what the store's appender and proof server use)

#[test]
fn frontier_appends_match_stored_hashes_and_roots_for_every_size_to_1100() {
    let entries = entries(1100);
    let store = build(&entries);
    let mut frontier = merkle::Frontier::empty();
    assert_eq!(frontier.root(), empty_tree_hash());
    for (n, entry) in entries.iter().enumerate() {
        let n = n as u64;
        // Reloading the frontier from the store at any size gives the same state.
        let reloaded = merkle::Frontier::read(n, &store).unwrap();
        assert_eq!(reloaded, frontier, "frontier at size {n}");
        let got = frontier.append(leaf_hash(entry)).unwrap();
        let start = stored_hash_index(0, n) as usize;
        let end = stored_hash_count(n + 1) as usize;
        assert_eq!(got, store[start..end], "stored hashes of record {n}");
        assert_eq!(frontier.size(), n + 1);
        assert_eq!(
            frontier.root(),
            tree_hash(n + 1, &store).unwrap(),
            "root at {}",
            n + 1
        );
    }
}

#[test]
fn frontier_refuses_wrong_number_of_hashes() {
    let store = build(&entries(6));
    let mut hashes = store.read_hashes(&merkle::Frontier::indexes(6)).unwrap();
    assert_eq!(hashes.len(), 2);
    hashes.pop();
    assert!(matches!(
        merkle::Frontier::from_hashes(6, hashes),
        Err(LogError::ShortRead { wanted: 2, got: 1 })
    ));
}

#[test]
fn prefetched_indexes_answer_proofs_exactly() {
    let store = build(&entries(300));
    for size in [1u64, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300] {
        let idx = merkle::tree_hash_indexes(size);
        let pre = merkle::Prefetched::new(idx.clone(), store.read_hashes(&idx).unwrap()).unwrap();
        assert_eq!(
            tree_hash(size, &pre).unwrap(),
            tree_hash(size, &store).unwrap()
        );
        for index in [0, size / 2, size - 1] {
            let idx = merkle::inclusion_proof_indexes(size, index);
            let pre =
                merkle::Prefetched::new(idx.clone(), store.read_hashes(&idx).unwrap()).unwrap();
            assert_eq!(
                prove_record(size, index, &pre).unwrap(),
                prove_record(size, index, &store).unwrap()
            );
        }
        for old in [1, size / 3, size - 1] {
            let idx = merkle::consistency_proof_indexes(size, old);
            let pre =
                merkle::Prefetched::new(idx.clone(), store.read_hashes(&idx).unwrap()).unwrap();
            assert_eq!(
                prove_tree(size, old, &pre).unwrap(),
                prove_tree(size, old, &store).unwrap()
            );
        }
    }
    // Missing hashes are an error, never a wrong answer.
    let pre = merkle::Prefetched::new(vec![0], vec![store[0]]).unwrap();
    assert!(matches!(
        prove_record(300, 5, &pre),
        Err(LogError::MissingHash(_)) | Err(LogError::ShortRead { .. })
    ));
    assert!(merkle::Prefetched::new(vec![0, 1], vec![store[0]]).is_err());
    assert!(merkle::inclusion_proof_indexes(5, 5).is_empty());
    assert!(merkle::consistency_proof_indexes(5, 6).is_empty());
}
