//! The delivery directives of a low-latency playlist request
//! (RFC 8216bis 6.2.5): `_HLS_msn`, `_HLS_part` and `_HLS_skip`, read from
//! the query string. Pure: no I/O, nothing async.

/// What a playlist request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Directives {
    /// `_HLS_msn`: answer once segment `msn` is complete (blocking reload).
    pub(crate) msn: Option<u64>,
    /// `_HLS_part`: with `msn`, once that part of it is published.
    pub(crate) part: Option<u32>,
    /// `_HLS_skip=YES` or `v2`: a delta update is welcome.
    pub(crate) skip: bool,
}

/// Why a query is refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DirectiveError {
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    #[error("{0} must be a decimal integer in range")]
    NotANumber(&'static str),
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("_HLS_skip must be YES or v2")]
    BadSkip,
}

const MSN: &str = "_HLS_msn";
const PART: &str = "_HLS_part";
const SKIP: &str = "_HLS_skip";

impl Directives {
    /// Strict, for playlists that offer blocking reload: a malformed or
    /// repeated directive is an error (RFC 8216bis 6.2.5.2 makes
    /// `_HLS_part` without `_HLS_msn` one). Other parameters (a player's
    /// cache buster) are ignored.
    pub(crate) fn parse(query: Option<&str>) -> Result<Directives, DirectiveError> {
        let mut msn = None;
        let mut part = None;
        let mut skip = None;
        for (key, value) in pairs(query) {
            match key {
                MSN => set_once(&mut msn, MSN, number::<u64>(value, MSN)?)?,
                PART => set_once(&mut part, PART, number::<u32>(value, PART)?)?,
                SKIP => set_once(&mut skip, SKIP, skip_value(value)?)?,
                _ => {}
            }
        }
        if part.is_some() && msn.is_none() {
            return Err(DirectiveError::PartWithoutMsn);
        }
        Ok(Directives {
            msn,
            part,
            skip: skip.unwrap_or(false),
        })
    }

    /// Lenient, for playlists that offer no blocking reload: only whether
    /// a delta update is asked for; everything else is ignored, as a
    /// server that does not support a directive must.
    pub(crate) fn wants_skip(query: Option<&str>) -> bool {
        pairs(query).any(|(k, v)| k == SKIP && skip_value(v) == Ok(true))
    }
}

fn pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), DirectiveError> {
    if slot.replace(value).is_some() {
        return Err(DirectiveError::Repeated(name));
    }
    Ok(())
}

/// Digits only: `u64::from_str` would also take `+7`, which no player
/// sends and a cache would key apart from `7`.
fn number<T: std::str::FromStr>(value: &str, name: &'static str) -> Result<T, DirectiveError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DirectiveError::NotANumber(name));
    }
    value.parse().map_err(|_| DirectiveError::NotANumber(name))
}

/// `v2` asks to skip date ranges as well; we send none, so it is YES.
fn skip_value(value: &str) -> Result<bool, DirectiveError> {
    match value {
        "YES" | "v2" => Ok(true),
        _ => Err(DirectiveError::BadSkip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Directives, DirectiveError> {
        Directives::parse(Some(q))
    }

    #[test]
    fn good_queries() {
        assert_eq!(Directives::parse(None), Ok(Directives::default()));
        assert_eq!(parse(""), Ok(Directives::default()));
        let d = parse("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES").unwrap();
        assert_eq!((d.msn, d.part, d.skip), (Some(12), Some(3), true));
        let d = parse("_HLS_skip=v2&t=123&_HLS_msn=0").unwrap();
        assert_eq!((d.msn, d.part, d.skip), (Some(0), None, true));
        assert_eq!(parse("cachebuster&x=1").unwrap(), Directives::default());
        let max = format!("_HLS_msn={}", u64::MAX);
        assert_eq!(parse(&max).unwrap().msn, Some(u64::MAX));
    }

    #[test]
    fn bad_queries() {
        use DirectiveError::*;
        assert_eq!(parse("_HLS_part=1"), Err(PartWithoutMsn));
        for q in [
            "_HLS_msn=",
            "_HLS_msn",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=1.0",
            "_HLS_msn=0x10",
            "_HLS_msn=%31",
            "_HLS_msn= 1",
            "_HLS_msn=18446744073709551616",
        ] {
            assert_eq!(parse(q), Err(NotANumber(MSN)), "{q}");
        }
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=4294967296"),
            Err(NotANumber(PART))
        );
        assert_eq!(parse("_HLS_msn=1&_HLS_msn=2"), Err(Repeated(MSN)));
        for q in [
            "_HLS_skip=yes",
            "_HLS_skip=NO",
            "_HLS_skip=",
            "_HLS_skip=v3",
        ] {
            assert_eq!(parse(q), Err(BadSkip), "{q}");
        }
    }

    #[test]
    fn lenient_skip() {
        assert!(Directives::wants_skip(Some("_HLS_msn=x&_HLS_skip=YES")));
        assert!(Directives::wants_skip(Some("_HLS_skip=v2")));
        assert!(!Directives::wants_skip(Some("_HLS_skip=no&_HLS_part=1")));
        assert!(!Directives::wants_skip(None));
    }
}
