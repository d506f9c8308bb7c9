//! W3C trace context for published events: ingest joins the caller's trace
//! when the request carries a well-formed `traceparent`, and starts one
//! otherwise. Only a value that passes the format check is forwarded, so a
//! hostile header never reaches a NATS header.

/// The `traceparent` to publish with: the caller's trace id and flags with a
/// new parent id (ingest's own span), or a new sampled trace.
pub fn for_publish(incoming: Option<&str>) -> String {
    let span: u64 = nonzero(rand::random);
    match incoming.and_then(parse) {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span:016x}-{flags}"),
        None => {
            let trace: u128 = nonzero(rand::random);
            format!("00-{trace:032x}-{span:016x}-01")
        }
    }
}

/// `(trace id, flags)` of a valid version-00 `traceparent`.
fn parse(raw: &str) -> Option<(&str, &str)> {
    let mut parts = raw.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && hex(flags, 2)
        && !all_zero(trace_id)
        && !all_zero(parent_id);
    valid.then_some((trace_id, flags))
}

/// Trace and span ids must not be all zeros.
fn nonzero<T: PartialEq + Default>(mut draw: impl FnMut() -> T) -> T {
    loop {
        let value = draw();
        if value != T::default() {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_caller_trace_is_joined_with_a_new_span() {
        let ours = for_publish(Some(CALLER));
        assert!(ours.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(ours.ends_with("-01"));
        assert_ne!(ours, CALLER);
        assert!(parse(&ours).is_some());
    }

    #[test]
    fn missing_or_hostile_headers_start_a_new_trace() {
        for bad in [
            None,
            Some(""),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX: y"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        ] {
            let ours = for_publish(bad);
            assert!(parse(&ours).is_some(), "{ours}");
            assert!(!ours.contains("4bf92f35"), "{bad:?} was joined");
        }
    }
}
