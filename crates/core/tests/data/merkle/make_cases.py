#!/usr/bin/env python3
"""Writes the Merkle test vectors in this directory.

The published values below are copied verbatim from transparency-dev/merkle:
  testonly/constants.go   LeafInputs(), NodeHashes(), RootHashes()
  proof/verify_test.go    inclusionProofs, consistencyProofs, roots, leaves
(verify_test.go numbers leaves from 1: its {leaf: 6, size: 8} is index 5 here).
The fail_ cases are derived from them by one change each, named in `change`.

Run from anywhere: python3 make_cases.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CONSTANTS = "transparency-dev/merkle testonly/constants.go"
VERIFY = "transparency-dev/merkle proof/verify_test.go"

LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
          "606162636465666768696a6b6c6d6e6f"]

# RootHashes(), by tree size 0..8.
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# NodeHashes(): [level][index] of every perfect subtree of the 8-leaf tree.
NODES = [
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]

# inclusionProofs: (1-based leaf, size, proof). {0, 0, nil} is an invalid probe there
# and is not a vector.
INCLUSION = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]

# consistencyProofs: (size1, size2, proof).
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]

# verify_test.go's sha256SomeHash: an arbitrary hash that is no node of the tree.
SOME_HASH = "abacaba000000000000000000000000000000000000000000060061e00123456"


def path_len(index, size):
    """RFC 9162 §2.1.3.2 inclusion path length: differing bits plus right border."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + bin(index >> inner).count("1")


def flip(h, byte=0, mask=0x08):
    b = bytearray.fromhex(h)
    b[byte] ^= mask
    return b.hex()


def write(name, case):
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")


def main():
    for old in os.listdir(HERE):
        if old.endswith(".json"):
            os.remove(os.path.join(HERE, old))

    write("rfc6962_tree_8_leaves", {
        "source": f"{CONSTANTS}: LeafInputs, RootHashes (index = tree size), NodeHashes",
        "leaves": LEAVES, "roots": ROOTS, "nodes": NODES,
    })

    for leaf, size, proof in INCLUSION:
        index = leaf - 1
        name = f"inclusion_{index}_of_{size}"
        base = {
            "source": f"{VERIFY}: inclusionProofs {{{leaf}, {size}}}; root from roots",
            "leaf_index": index, "tree_size": size, "leaf": LEAVES[index],
            "root": ROOTS[size], "proof": proof, "error": None,
        }
        write(name, base)
        if not proof:
            continue

        def fail(suffix, change, error, **edits):
            case = dict(base, **edits)
            case["source"] = f"derived from {name}.json by make_cases.py"
            case["derived_from"] = name
            case["change"] = change
            case["error"] = error
            write(f"fail_{name}_{suffix}", case)

        fail("wrong_root", "root replaced by the empty tree hash", "proof_mismatch",
             root=ROOTS[0])
        fail("other_root", "root replaced by verify_test.go's sha256SomeHash",
             "proof_mismatch", root=SOME_HASH)
        other = index ^ 1 if index ^ 1 < size else index - 1
        fail("wrong_index", f"leaf_index {index} -> {other}",
             "proof_mismatch" if path_len(other, size) == len(proof) else "proof_length",
             leaf_index=other)
        fail("wrong_leaf", "leaf input replaced by b'WrongLeaf'", "proof_mismatch",
             leaf="WrongLeaf".encode().hex())
        fail("truncated_proof", "last proof element removed", "proof_length",
             proof=proof[:-1])
        fail("extra_element", "root appended to the proof", "proof_length",
             proof=proof + [ROOTS[size]])
        fail("flipped_bit", "bit 3 of proof[0] flipped", "proof_mismatch",
             proof=[flip(proof[0])] + proof[1:])
        fail("index_past_size", f"leaf_index {index} -> tree_size {size}",
             "index_out_of_range", leaf_index=size)

    for size1, size2, proof in CONSISTENCY:
        name = f"consistency_{size1}_to_{size2}"
        base = {
            "source": f"{VERIFY}: consistencyProofs {{{size1}, {size2}}}; roots from roots",
            "old_size": size1, "new_size": size2,
            "old_root": ROOTS[size1], "new_root": ROOTS[size2],
            "proof": proof, "error": None,
        }
        write(name, base)
        if not proof:
            continue

        def fail(suffix, change, error, **edits):
            case = dict(base, **edits)
            case["source"] = f"derived from {name}.json by make_cases.py"
            case["derived_from"] = name
            case["change"] = change
            case["error"] = error
            write(f"fail_{name}_{suffix}", case)

        fail("wrong_old_root", "old_root replaced by sha256SomeHash", "proof_mismatch",
             old_root=SOME_HASH)
        fail("wrong_new_root", "new_root replaced by sha256SomeHash", "proof_mismatch",
             new_root=SOME_HASH)
        fail("swapped_roots", "old_root and new_root swapped", "proof_mismatch",
             old_root=ROOTS[size2], new_root=ROOTS[size1])
        fail("swapped_sizes", "old_size and new_size swapped (and the roots with them)",
             "size_order", old_size=size2, new_size=size1,
             old_root=ROOTS[size2], new_root=ROOTS[size1])
        fail("truncated_proof", "last proof element removed", "proof_length",
             proof=proof[:-1])
        fail("extra_element", "new_root appended to the proof", "proof_length",
             proof=proof + [ROOTS[size2]])
        fail("empty_proof", "proof emptied", "proof_length", proof=[])
        fail("flipped_bit", "bit 4 of the last proof element flipped", "proof_mismatch",
             proof=proof[:-1] + [flip(proof[-1], 0, 0x10)])


if __name__ == "__main__":
    main()
