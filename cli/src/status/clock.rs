//! Times as the status views show them: wall-clock Unix milliseconds from
//! the records, as RFC 3339 in JSON and as `HH:MM` / "3 s ago" for people.

/// RFC 3339 (UTC) of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// `HH:MM` (UTC) of Unix milliseconds.
pub fn hh_mm(ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// "3 s", "4 min", "2 h" between two Unix millisecond times.
pub fn ago(then_ms: i64, now_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(hh_mm(12 * 3_600_000 + 4 * 60_000 + 59_000), "12:04");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(ago(1_000, 4_500), "3 s");
        assert_eq!(ago(0, 600_000), "10 min");
        assert_eq!(ago(0, 3 * 3_600_000), "3 h");
    }
}
