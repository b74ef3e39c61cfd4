//! Exact amounts and ISO 4217 currencies for consent policies and requests.
//!
//! An amount is a JSON string (`"10.50"`) or a JSON integer (`500`); binary floats are
//! never accepted, because `0.1 + 0.2` is not `0.3` and a budget must add up exactly.
//! The grammar of a string amount is `0 | [1-9][0-9]*` optionally followed by `.` and
//! one or more digits: no sign, no exponent, no leading zeros, no `NaN`/`Infinity`.
//!
//! Precision rule: an amount may have at most as many decimals as its currency has
//! minor units (2 for USD, 0 for JPY, 3 for KWD, 4 for CLF), counted as written
//! (`"10.500"` is refused in USD), so every accepted amount is a whole number of the
//! currency's smallest unit. Magnitude rule: at most
//! [`MAX_AMOUNT_DIGITS`] digits before the decimal point.

use iso_currency::Currency;
use rust_decimal::Decimal;
use serde_json::Value;

/// Most digits accepted before the decimal point (amounts below 10^15).
pub const MAX_AMOUNT_DIGITS: usize = 15;

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// A JSON number with a fraction or an exponent (a binary float).
    #[error("JSON floats are refused: write the amount as a string, e.g. `\"{0}\"`")]
    Float(String),
    /// A leading minus sign or a negative integer.
    #[error("negative amounts are refused")]
    Negative,
    /// A request's spend of zero: it asks for nothing and would only read what is
    /// left of a budget.
    #[error("a spend of 0 is refused: an amount must be positive")]
    Zero,
    /// Exponent form such as `1e3`.
    #[error("exponent form `{0}` is refused: write the digits out")]
    Exponent(String),
    /// `NaN`, `Infinity` and the like.
    #[error("`{0}` is not a number")]
    NotANumber(String),
    /// Any other string that is not a plain decimal.
    #[error("`{0}` is not a plain decimal (digits, optionally `.` and digits)")]
    Malformed(String),
    /// More decimals than the currency's minor units.
    #[error("`{amount}` has more than {max_scale} decimals (the minor units of {currency})")]
    TooPrecise {
        /// The amount as given.
        amount: String,
        /// Decimals allowed.
        max_scale: u32,
        /// The currency code.
        currency: String,
    },
    /// At least 10^15.
    #[error("`{0}` is too large (at most 15 digits before the decimal point)")]
    TooLarge(String),
    /// Neither a string nor an integer.
    #[error("an amount must be a string such as `\"10.50\"` or an integer")]
    WrongType,
}

/// Why a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CurrencyError {
    /// Not an ISO 4217 code at all.
    #[error("`{0}` is not an ISO 4217 currency code")]
    Unknown(String),
    /// A code ISO 4217 has withdrawn (superseded by another).
    #[error("`{code}` is a withdrawn ISO 4217 code; use `{replaced_by}`")]
    Withdrawn {
        /// The code given.
        code: String,
        /// The code that superseded it.
        replaced_by: String,
    },
    /// A special code that is no money one can spend (`XXX`, `XTS`, `XAU`, `XDR`…).
    #[error(
        "`{0}` is a special ISO 4217 code (metal, test or no currency), not a spendable currency"
    )]
    NotSpendable(String),
    /// Not a string.
    #[error("a currency must be a string such as `\"USD\"`")]
    WrongType,
}

/// Codes withdrawn from ISO 4217 before `iso_currency`'s data begins (it knows only
/// recent ones such as `HRK`), with their successors: the euro's predecessors and a
/// few other redenominations a policy author may still type.
const LEGACY: [(&str, &str); 21] = [
    ("ATS", "EUR"),
    ("BEF", "EUR"),
    ("CYP", "EUR"),
    ("DEM", "EUR"),
    ("EEK", "EUR"),
    ("ESP", "EUR"),
    ("FIM", "EUR"),
    ("FRF", "EUR"),
    ("GRD", "EUR"),
    ("IEP", "EUR"),
    ("ITL", "EUR"),
    ("LTL", "EUR"),
    ("LUF", "EUR"),
    ("LVL", "EUR"),
    ("MTL", "EUR"),
    ("NLG", "EUR"),
    ("PTE", "EUR"),
    ("SIT", "EUR"),
    ("SKK", "EUR"),
    ("RUR", "RUB"),
    ("TRL", "TRY"),
];

/// Parses an active ISO 4217 alphabetic code (upper case, exactly as ISO writes it).
pub fn parse_currency(code: &str) -> Result<Currency, CurrencyError> {
    let shown = || code.chars().take(16).collect::<String>();
    if let Some((_, next)) = LEGACY.iter().find(|(old, _)| *old == code) {
        return Err(CurrencyError::Withdrawn {
            code: shown(),
            replaced_by: (*next).to_owned(),
        });
    }
    let cur = Currency::from_code(code).ok_or_else(|| CurrencyError::Unknown(shown()))?;
    if let Some(next) = cur.is_superseded() {
        return Err(CurrencyError::Withdrawn {
            code: shown(),
            replaced_by: next.code().to_owned(),
        });
    }
    if cur.is_special() || cur.exponent().is_none() {
        return Err(CurrencyError::NotSpendable(shown()));
    }
    Ok(cur)
}

/// Decimals allowed for amounts in `currency` (its ISO 4217 minor units).
pub fn minor_units(currency: Currency) -> u32 {
    // parse_currency refuses codes without an exponent; 0 is the safe answer for
    // any other caller (whole units only).
    currency.exponent().map_or(0, u32::from)
}

/// Parses an amount in `currency` from its JSON form (string or integer).
pub fn parse_amount(value: &Value, currency: Currency) -> Result<Decimal, AmountError> {
    let d = match value {
        Value::String(s) => parse_amount_str(s, currency)?,
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                let d = Decimal::from(u);
                check_magnitude(d, &u.to_string())?;
                d
            } else if n.as_i64().is_some() {
                return Err(AmountError::Negative);
            } else {
                let shown = n.to_string();
                if shown.starts_with('-') {
                    return Err(AmountError::Negative);
                }
                return Err(AmountError::Float(shown));
            }
        }
        _ => return Err(AmountError::WrongType),
    };
    // As written ("10.500" is refused in USD; strings were checked while parsing).
    check_scale(d.scale(), d, currency)?;
    Ok(d)
}

/// Checks an amount a caller built itself: not negative, not too large, not more
/// precise than `currency` allows.
pub fn check_amount(amount: Decimal, currency: Currency) -> Result<(), AmountError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AmountError::Negative);
    }
    check_magnitude(amount, &amount.to_string())?;
    // A computed value may carry trailing zeros ("10.500"); only its value counts.
    check_scale(amount.normalize().scale(), amount, currency)
}

fn check_scale(scale: u32, d: Decimal, currency: Currency) -> Result<(), AmountError> {
    let max_scale = minor_units(currency);
    if scale > max_scale {
        return Err(AmountError::TooPrecise {
            amount: d.to_string(),
            max_scale,
            currency: currency.code().to_owned(),
        });
    }
    Ok(())
}

fn check_magnitude(d: Decimal, shown: &str) -> Result<(), AmountError> {
    if d.trunc().abs() >= Decimal::from(10u64.pow(MAX_AMOUNT_DIGITS as u32)) {
        return Err(AmountError::TooLarge(clip(shown)));
    }
    Ok(())
}

fn clip(s: &str) -> String {
    if s.len() <= 40 {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(40).collect();
        out.push('…');
        out
    }
}

/// An amount from its JSON text as the client wrote it: a string (as [`parse_amount`])
/// or a number literal, read from its digits and never through a binary float, so
/// `12.50` is exactly 12.50 (AgentOAuth's clients send numbers). A number keeps every
/// rule of a string: no exponent, not negative, at most the currency's minor units,
/// bounded; `null`, `true`, objects and arrays are the wrong type.
pub fn parse_amount_literal(text: &str, currency: Currency) -> Result<Decimal, AmountError> {
    let text = text.trim_matches([' ', '\t', '\n', '\r']);
    let d = match text.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(|_| AmountError::WrongType)?;
            parse_amount_str(&s, currency)?
        }
        Some(b'0'..=b'9' | b'-') => parse_amount_str(text, currency)?,
        _ => return Err(AmountError::WrongType),
    };
    check_scale(d.scale(), d, currency)?;
    Ok(d)
}

fn parse_amount_str(s: &str, currency: Currency) -> Result<Decimal, AmountError> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(AmountError::Malformed(String::new()));
    };
    if first == b'-' {
        return Err(AmountError::Negative);
    }
    let lower = s.to_ascii_lowercase();
    let bare = lower.trim_start_matches('+');
    if ["nan", "inf", "infinity", "snan"].contains(&bare) {
        return Err(AmountError::NotANumber(clip(s)));
    }
    if first.is_ascii_digit() && bytes.iter().any(|b| matches!(b, b'e' | b'E')) {
        return Err(AmountError::Exponent(clip(s)));
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let well_formed =
        digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits);
    if !well_formed {
        return Err(AmountError::Malformed(clip(s)));
    }
    if int.len() > MAX_AMOUNT_DIGITS {
        return Err(AmountError::TooLarge(clip(s)));
    }
    // Checked here, before the digits become a number, so a thousand decimals never
    // reach the arithmetic below (at most 15 + 4 digits do).
    let frac = frac.unwrap_or("");
    let max_scale = minor_units(currency);
    if frac.len() > max_scale as usize {
        return Err(AmountError::TooPrecise {
            amount: clip(s),
            max_scale,
            currency: currency.code().to_owned(),
        });
    }
    let mut mantissa: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    let scale = u32::try_from(frac.len()).map_err(|_| AmountError::Malformed(clip(s)))?;
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| AmountError::Malformed(clip(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_number_literal_is_read_from_its_digits() {
        let usd = parse_currency("USD").unwrap();
        for (text, want) in [
            ("12.50", "12.50"),
            ("\"12.50\"", "12.50"),
            ("3", "3"),
            ("0.1", "0.1"),
            ("1000.0", "1000.0"),
        ] {
            let d = parse_amount_literal(text, usd).unwrap();
            assert_eq!(d.to_string(), want, "{text}");
        }
        assert_eq!(parse_amount_literal("-5", usd), Err(AmountError::Negative));
        assert!(matches!(
            parse_amount_literal("1e3", usd),
            Err(AmountError::Exponent(_))
        ));
        assert!(matches!(
            parse_amount_literal("10.505", usd),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_amount_literal("12345678901234567890", usd),
            Err(AmountError::TooLarge(_))
        ));
        for wrong in ["null", "true", "{}", "[1]", ""] {
            assert_eq!(
                parse_amount_literal(wrong, usd),
                Err(AmountError::WrongType),
                "{wrong}"
            );
        }
    }

    fn usd(v: Value) -> Result<String, AmountError> {
        parse_amount(&v, Currency::USD).map(|d| d.to_string())
    }

    #[test]
    fn accepts_plain_decimals_and_integers() {
        assert_eq!(usd(json!("10.50")).unwrap(), "10.50");
        assert_eq!(usd(json!("0")).unwrap(), "0");
        assert_eq!(usd(json!("0.01")).unwrap(), "0.01");
        assert_eq!(usd(json!(500)).unwrap(), "500");
        assert_eq!(
            usd(json!("999999999999999.99")).unwrap(),
            "999999999999999.99"
        );
        assert!(matches!(
            usd(json!("10.500")),
            Err(AmountError::TooPrecise { .. })
        ));
    }

    #[test]
    fn refuses_everything_else() {
        assert!(matches!(usd(json!(10.5)), Err(AmountError::Float(_))));
        assert!(matches!(usd(json!(1e3)), Err(AmountError::Float(_))));
        assert_eq!(usd(json!(-5)), Err(AmountError::Negative));
        assert_eq!(usd(json!(-5.5)), Err(AmountError::Negative));
        assert_eq!(usd(json!("-5")), Err(AmountError::Negative));
        assert!(matches!(usd(json!("1e3")), Err(AmountError::Exponent(_))));
        assert!(matches!(usd(json!("NaN")), Err(AmountError::NotANumber(_))));
        assert!(matches!(
            usd(json!("Infinity")),
            Err(AmountError::NotANumber(_))
        ));
        for bad in [
            "", "+5", "05", "5.", ".5", "1,5", " 5", "5 ", "0x10", "1_000",
        ] {
            assert!(
                matches!(usd(json!(bad)), Err(AmountError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            usd(json!("10.005")),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_amount(&json!("1.5"), Currency::JPY),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            usd(json!("1000000000000000")),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            usd(json!(1_000_000_000_000_000u64)),
            Err(AmountError::TooLarge(_))
        ));
        assert_eq!(usd(json!(null)), Err(AmountError::WrongType));
        assert_eq!(usd(json!(true)), Err(AmountError::WrongType));
    }

    #[test]
    fn currencies() {
        assert_eq!(parse_currency("USD"), Ok(Currency::USD));
        assert_eq!(parse_currency("JPY"), Ok(Currency::JPY));
        assert_eq!(
            parse_currency("usd"),
            Err(CurrencyError::Unknown("usd".into()))
        );
        assert_eq!(
            parse_currency("DEM"),
            Err(CurrencyError::Withdrawn {
                code: "DEM".into(),
                replaced_by: "EUR".into()
            })
        );
        assert_eq!(
            parse_currency("ABC"),
            Err(CurrencyError::Unknown("ABC".into()))
        );
        assert_eq!(
            parse_currency("HRK"),
            Err(CurrencyError::Withdrawn {
                code: "HRK".into(),
                replaced_by: "EUR".into()
            })
        );
        assert_eq!(
            parse_currency("XXX"),
            Err(CurrencyError::NotSpendable("XXX".into()))
        );
        assert_eq!(
            parse_currency("XAU"),
            Err(CurrencyError::NotSpendable("XAU".into()))
        );
    }

    #[test]
    fn caller_built_amounts_are_checked() {
        assert!(check_amount(Decimal::new(1050, 2), Currency::USD).is_ok());
        assert_eq!(
            check_amount(Decimal::new(-1, 0), Currency::USD),
            Err(AmountError::Negative)
        );
        assert!(check_amount(Decimal::new(1, 3), Currency::USD).is_err());
        assert!(check_amount(Decimal::MAX, Currency::USD).is_err());
    }
}
