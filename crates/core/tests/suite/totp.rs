//! RFC 6238's published test vectors (Appendix B, as a data file) through core's TOTP.

use bonafide_core::totp::{self, TotpAlg};

#[test]
fn rfc6238_appendix_b_vectors() {
    let text = include_str!("../data/totp/rfc6238_appendix_b.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let step = doc["step_seconds"].as_i64().unwrap();
    let digits = u32::try_from(doc["digits"].as_u64().unwrap()).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 6);
    let mut checked = 0;
    for v in vectors {
        let time = v["time"].as_i64().unwrap();
        // T as the RFC prints it: the step counter in hex.
        let t = u64::from_str_radix(v["T"].as_str().unwrap(), 16).unwrap();
        assert_eq!(u64::try_from(time / step).unwrap(), t, "T at {time}");
        for (name, alg) in [
            ("SHA1", TotpAlg::Sha1),
            ("SHA256", TotpAlg::Sha256),
            ("SHA512", TotpAlg::Sha512),
        ] {
            let secret = doc["secrets"][name].as_str().unwrap().as_bytes();
            let code = totp::totp_at(secret, time, step, digits, alg);
            assert_eq!(
                totp::format_code(code, digits),
                v[name].as_str().unwrap(),
                "{name} at {time}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}
