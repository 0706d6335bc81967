//! An appliance image's version (`IMAGE_VERSION`): dot-separated numbers compared one by one, so
//! that every build gets a larger one (by default the build's UTC time, `YYYY.MMDD.HHMMSS`) and
//! systemd-boot, which sorts entries by the same numbers, boots the newest first.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// At most this many numbers, each of at most 18 digits: comparable as `u64`s.
const MAX_PARTS: usize = 6;
const MAX_DIGITS: usize = 18;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version {
    text: String,
    parts: Vec<u64>,
}

impl Version {
    /// `YYYY.MMDD.HHMMSS` of this moment (UTC): each build's version is larger than the last.
    pub fn from_clock() -> Version {
        jiff::Timestamp::now().strftime("%Y.%m%d.%H%M%S").to_string().parse().expect("a clock version is valid")
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(text: &str) -> Result<Version, String> {
        let invalid =
            || format!("{text:?} is not a version: use up to {MAX_PARTS} dot-separated numbers, like 2026.1130.2105");
        let parts: Vec<&str> = text.split('.').collect();
        if text.is_empty() || parts.len() > MAX_PARTS {
            return Err(invalid());
        }
        let parts = parts
            .iter()
            .map(|p| {
                if p.is_empty() || p.len() > MAX_DIGITS || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                p.parse::<u64>().map_err(|_| invalid())
            })
            .collect::<Result<Vec<u64>, String>>()?;
        Ok(Version { text: text.to_owned(), parts })
    }
}

impl TryFrom<String> for Version {
    type Error = String;
    fn try_from(text: String) -> Result<Version, String> {
        text.parse()
    }
}

impl From<Version> for String {
    fn from(version: Version) -> String {
        version.text
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        // Missing numbers count as 0 (1.2 == 1.2.0 in order), then the text breaks the tie so
        // that the order agrees with equality.
        let len = self.parts.len().max(other.parts.len());
        (0..len)
            .map(|i| self.parts.get(i).unwrap_or(&0).cmp(other.parts.get(i).unwrap_or(&0)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn numbers_are_compared_as_numbers() {
        assert!(v("2026.1130.2105") > v("2026.0105.235959"));
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert!(v("1.0.1") > v("1"));
        assert_eq!(v("7").cmp(&v("7")), Ordering::Equal);
        assert!(Version::from_clock() > v("2026.0101.000000"));
    }

    #[test]
    fn anything_else_is_refused_saying_what_a_version_is() {
        for bad in ["", "1..2", "v1", "1.2-rc1", "1.2.3.4.5.6.7", "1 2", "1234567890123456789"] {
            let error = bad.parse::<Version>().unwrap_err();
            assert!(error.contains("dot-separated numbers"), "{bad}: {error}");
        }
    }
}
