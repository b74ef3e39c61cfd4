#!/usr/bin/env python3
"""Derives the negative (`fail_`) signed-note vectors from the published ones here.

Each derived case takes the note of a published case and changes it in exactly one
way (`change` says how), so `open_note` must refuse it with `error`. Files copied
verbatim from their sources (see README.md) are not written by this script, nor are
the `fail_` files whose `source` is a published note as-is. Run from this directory:
`python3 derive_fail_cases.py`.
"""
import base64
import json
import struct


def load(name):
    with open(name, encoding="utf-8") as f:
        return json.load(f)


def write(name, base, change, note, error):
    v = load(base)
    out = {
        "source": v["source"],
        "derived_from": base,
        "change": change,
        "verifier_keys": v["verifier_keys"],
        "note": note,
        "error": error,
    }
    with open(name, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")


def split(note):
    """(text, signature lines) of a note, split at its last blank line."""
    i = note.rindex("\n\n")
    return note[: i + 1], note[i + 2 :]


PETER = "go_peterneumann.json"
SUMDB = "sumdb_checkpoint_49189689.json"

peter = load(PETER)["note"]
text, sig = split(peter)
name, b64 = sig[len("— ") : -1].split(" ")
raw = base64.b64decode(b64)

changed = text.replace("your problem,", "your problen,", 1)
assert changed != text
write("fail_go_text_byte_changed.json", PETER,
      'text, line 1: "problem," -> "problen,"', changed + "\n" + sig, "invalid_signature")

(h,) = struct.unpack(">I", raw[:4])
wrong = struct.pack(">I", h + 1) + raw[4:]
write("fail_go_wrong_key_hash.json", PETER,
      "key ID in the signature c74f20a3 -> c74f20a4 (now an unknown key)",
      text + "\n— " + name + " " + base64.b64encode(wrong).decode() + "\n",
      "no_verified_signature")

assert len(b64) == 92 and b64.endswith("=")
write("fail_go_signature_truncated.json", PETER,
      "last 4 base64 characters of the signature dropped (68 -> 66 bytes, still valid base64)",
      text + "\n— " + name + " " + b64[:-4] + "\n", "invalid_signature")

write("fail_go_duplicated_signature_line.json", PETER,
      "the signature line repeated", text + "\n" + sig + sig, "duplicate_signature")

write("fail_go_missing_blank_line.json", PETER,
      "blank line between text and signature removed", text + sig, "missing_blank_line")

write("fail_go_crlf_line_endings.json", PETER,
      "every \\n replaced by \\r\\n", peter.replace("\n", "\r\n"), "control_character")

write("fail_go_extra_trailing_line.json", PETER,
      'line "Unexpected line." appended (as in Go\'s TestOpen)',
      peter + "Unexpected line.\n", "malformed_signature_line")

write("fail_go_extra_trailing_bytes.json", PETER,
      '"x" appended after the final newline', peter + "x", "missing_signature_line")

write("fail_go_missing_final_newline.json", PETER,
      "final newline removed", peter[:-1], "missing_signature_line")

write("fail_go_too_many_signatures.json", PETER,
      "the signature line repeated 101 times (as in Go's TestOpen)",
      text + "\n" + sig * 101, "too_many_signatures")

sumdb = load(SUMDB)["note"]
stext, ssig = split(sumdb)
lines = stext.split("\n")
root = bytearray(base64.b64decode(lines[2]))
root[0] ^= 1
lines[2] = base64.b64encode(bytes(root)).decode()
write("fail_sumdb_checkpoint_root_changed.json", SUMDB,
      "root hash, first byte: lowest bit flipped", "\n".join(lines) + "\n" + ssig,
      "invalid_signature")
