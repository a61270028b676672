//! Sizes and durations as people write them ("4GiB", "30s") and as the API stores them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes. Parses "4GiB", "512MiB", "2G" (decimal) or a plain integer of bytes.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, example = "4GiB")]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // bytesize prints "4.0 GiB"; we drop the space and a trailing ".0" so the text parses back
        // and reads like what the user wrote.
        let text = bytesize::ByteSize(self.0).display().iec().to_string();
        let text = text.replace(".0 ", " ").replace(' ', "");
        f.write_str(&text)
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err("an empty size".into());
        }
        if let Ok(n) = t.parse::<u64>() {
            return Ok(ByteSize(n));
        }
        t.parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| format!("`{s}` is not a size; write it like 512MiB, 4GiB or 2GB"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(d, ByteSize)
    }
}

/// Accepts a plain number (converted by `from_number`) or text parsed with `FromStr`.
fn number_or_text<'de, D, T>(d: D, from_number: impl Fn(u64) -> T) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(from_number(n)),
        Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// A duration written like "30s", "5m", "2h 30m"; stored and compared in milliseconds.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, example = "30s")]
pub struct Millis(pub u64);

impl Millis {
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        write!(
            f,
            "{}",
            humantime::format_duration(Duration::from_millis(self.0))
        )
    }
}

impl fmt::Debug for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Millis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Millis(n.saturating_mul(1000)));
        }
        let d = humantime::parse_duration(t)
            .map_err(|_| format!("`{s}` is not a duration; write it like 30s, 5m or 2h"))?;
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(format!(
                "`{s}` is finer than a millisecond; durations are counted in whole milliseconds"
            ));
        }
        Ok(Millis(d.as_millis().min(u64::MAX as u128) as u64))
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Millis {
    /// A plain number is seconds, as in `timeout: 30`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_text(d, |secs| Millis(secs.saturating_mul(1000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        let s: ByteSize = "4GiB".parse().unwrap();
        assert_eq!(s.0, 4 << 30);
        assert_eq!(s.to_string(), "4GiB");
        assert_eq!(s.to_string().parse::<ByteSize>().unwrap(), s);
        assert_eq!("1024".parse::<ByteSize>().unwrap().0, 1024);
        assert!("lots".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations_parse_and_print_back() {
        let d: Millis = "2h 30m".parse().unwrap();
        assert_eq!(d.0, 9_000_000);
        assert_eq!(d.to_string().parse::<Millis>().unwrap(), d);
        assert_eq!("45".parse::<Millis>().unwrap().0, 45_000);
        assert!("soon".parse::<Millis>().is_err());
        // Never rounded away: a user who asks for 500us does not silently get nothing.
        assert_eq!("2ms".parse::<Millis>().unwrap().0, 2);
        assert!("500us".parse::<Millis>().is_err());
        assert!("1ms 500us".parse::<Millis>().is_err());
    }
}
