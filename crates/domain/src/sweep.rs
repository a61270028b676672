//! The values of one key of a sweep (`array:` in a job spec, `--array` on the command line): a list
//! as written, or a range `FROM..TO[:STEP]` that stays one short string however many jobs it makes.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// One key's values: `[a, b, c]`, or a range `"1..100000"` (both ends included) with an optional
/// step, `"0..1:0.25"` or `"10..1:-3"`. Decimals are exact: a range counts in units of its finest
/// decimal place, so `0.1..0.3:0.1` is `0.1`, `0.2`, `0.3`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SweepValues {
    /// The values as written (numbers in the list are taken as written, too).
    List(Vec<String>),
    /// `FROM..TO` or `FROM..TO:STEP` (the step is 1 unless given).
    #[schema(example = "1..100000:1")]
    Range(String),
}

impl SweepValues {
    /// How many values there are; a range that does not parse has none (validation says why).
    pub fn len(&self) -> u128 {
        match self {
            SweepValues::List(v) => v.len() as u128,
            SweepValues::Range(text) => Range::parse(text).map_or(0, |r| r.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why these values are unusable, if they are.
    pub fn check(&self) -> Result<(), String> {
        match self {
            SweepValues::List(v) if v.is_empty() => Err("has no values".into()),
            SweepValues::List(_) => Ok(()),
            SweepValues::Range(text) => Range::parse(text).map(|_| ()),
        }
    }

    /// Every value, in order. Call it only on values that passed [`SweepValues::check`] and
    /// whose count is within bounds: a range of a billion values makes a billion strings.
    pub fn values(&self) -> Vec<String> {
        match self {
            SweepValues::List(v) => v.clone(),
            SweepValues::Range(text) => match Range::parse(text) {
                Ok(r) => (0..r.len()).map(|i| r.value(i)).collect(),
                Err(_) => Vec::new(),
            },
        }
    }
}

impl From<Vec<String>> for SweepValues {
    fn from(v: Vec<String>) -> Self {
        SweepValues::List(v)
    }
}

impl<'de> Deserialize<'de> for SweepValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SweepValues;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of values or a range such as \"1..100\" or \"0..1:0.1\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<SweepValues, E> {
                Ok(SweepValues::Range(v.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SweepValues, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(Scalar(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(SweepValues::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value of a list: a string, or a number or boolean taken as it is written.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A parsed range: integers in units of `10^-scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    from: i128,
    to: i128,
    step: i128,
    scale: u32,
}

/// Digits after the point a range may have.
const MAX_SCALE: u32 = 12;

impl Range {
    /// Reads `FROM..TO` or `FROM..TO:STEP`.
    pub fn parse(text: &str) -> Result<Range, String> {
        let form = || {
            format!(
                "`{text}` is neither a list nor a range; write a range as FROM..TO or FROM..TO:STEP \
                 (for example 1..100 or 0..1:0.1)"
            )
        };
        let (from, rest) = text.trim().split_once("..").ok_or_else(form)?;
        let (to, step) = match rest.split_once(':') {
            Some((to, step)) => (to, Some(step)),
            None => (rest, None),
        };
        let parts = [Some(from), Some(to), step];
        let mut scale = 0;
        for p in parts.iter().flatten() {
            scale = scale.max(decimals(p.trim()).ok_or_else(form)?);
        }
        if scale > MAX_SCALE {
            return Err(format!(
                "`{text}`: a range has at most {MAX_SCALE} digits after the point"
            ));
        }
        let num = |s: &str| scaled(s.trim(), scale).ok_or_else(form);
        let (from, to) = (num(from)?, num(to)?);
        let step = match step {
            Some(s) => num(s)?,
            None => 10i128.pow(scale),
        };
        if step == 0 {
            return Err(format!(
                "`{text}`: the step is 0, which never reaches the end"
            ));
        }
        if (to - from).signum() * step.signum() < 0 {
            return Err(format!(
                "`{text}`: a step of that sign never goes from {} to {}; the values would be none",
                show(from, scale),
                show(to, scale)
            ));
        }
        Ok(Range {
            from,
            to,
            step,
            scale,
        })
    }

    /// How many values, both ends included where the steps land on them.
    pub fn len(&self) -> u128 {
        ((self.to - self.from) / self.step) as u128 + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th value, written with the range's decimal places.
    pub fn value(&self, i: u128) -> String {
        show(self.from + self.step * i as i128, self.scale)
    }
}

/// Digits after the point of a plain decimal number (`None` when it is not one).
fn decimals(s: &str) -> Option<u32> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !plain(int) || !plain(frac) || int.len() > 18 {
        return None;
    }
    Some(frac.len() as u32)
}

/// A decimal number in units of `10^-scale`.
fn scaled(s: &str, scale: u32) -> Option<i128> {
    let negative = s.starts_with('-');
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut frac = frac.to_string();
    while (frac.len() as u32) < scale {
        frac.push('0');
    }
    let frac: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let v = int * 10i128.pow(scale) + frac;
    Some(if negative { -v } else { v })
}

fn show(v: i128, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let unit = 10i128.pow(scale);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.abs();
    format!(
        "{sign}{}.{:0width$}",
        a / unit,
        a % unit,
        width = scale as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        SweepValues::Range(text.into()).values()
    }

    #[test]
    fn ranges_count_exactly() {
        assert_eq!(all("1..5"), ["1", "2", "3", "4", "5"]);
        assert_eq!(all("1..10:4"), ["1", "5", "9"]);
        assert_eq!(all("10..1:-3"), ["10", "7", "4", "1"]);
        assert_eq!(all("0.1..0.3:0.1"), ["0.1", "0.2", "0.3"]);
        assert_eq!(all("0..1:0.25"), ["0.00", "0.25", "0.50", "0.75", "1.00"]);
        assert_eq!(all("-1..1"), ["-1", "0", "1"]);
        assert_eq!(all("-0.5..0.5:0.5"), ["-0.5", "0.0", "0.5"]);
        assert_eq!(all("3..3"), ["3"]);
        assert_eq!(SweepValues::Range("1..100000".into()).len(), 100_000);
        assert_eq!(
            SweepValues::Range("1..1000000000".into()).len(),
            1_000_000_000
        );
    }

    #[test]
    fn bad_ranges_say_why() {
        for (text, says) in [
            ("1..10:0", "the step is 0"),
            ("10..1", "never goes from 10 to 1"),
            ("1..10:-1", "never goes"),
            ("a..b", "neither a list nor a range"),
            ("1-10", "neither a list nor a range"),
            ("1..", "neither a list nor a range"),
            ("0..1:0.0000000000001", "at most 12 digits"),
            ("1..99999999999999999999", "neither a list nor a range"),
        ] {
            let err = SweepValues::Range(text.into()).check().unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(SweepValues::List(vec![]).check().is_err());
    }

    #[test]
    fn lists_take_numbers_as_written() {
        let v: SweepValues = serde_yaml_ng::from_str("[0.01, 3, true, x]").unwrap();
        assert_eq!(
            v,
            SweepValues::List(vec!["0.01".into(), "3".into(), "true".into(), "x".into()])
        );
        let r: SweepValues = serde_yaml_ng::from_str("\"1..10:2\"").unwrap();
        assert_eq!(r, SweepValues::Range("1..10:2".into()));
        let err = serde_yaml_ng::from_str::<SweepValues>("{a: 1}").unwrap_err();
        assert!(
            err.to_string().contains("a list of values or a range"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&SweepValues::Range("1..3".into())).unwrap(),
            "\"1..3\""
        );
    }
}
