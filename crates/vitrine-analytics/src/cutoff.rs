//! The snapshot's cut-off: everything committed before it is copied, nothing after. By default
//! the start of today in São Paulo (the copy is D-1), or of the current N-hour window when the
//! business needs fresher data (`VITRINE_ANALYTICS_EVERY_HOURS`).

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

/// São Paulo's offset. Brazil has kept no daylight saving time since 2019 (Decree 9,772), so
/// the fixed offset is the zone's; a change of law would be one line here.
pub fn sao_paulo() -> FixedOffset {
    FixedOffset::west_opt(3 * 3600).expect("a valid offset")
}

/// The default cut-off at `now`: the start of the current day, or of the current `every_hours`
/// window of the day (windows start at local midnight), in São Paulo.
pub fn default_cutoff(now: DateTime<Utc>, every_hours: Option<u32>) -> DateTime<Utc> {
    let local = now.with_timezone(&sao_paulo());
    let window = every_hours.unwrap_or(24).clamp(1, 24);
    let hour = local.hour() / window * window;
    let start = local
        .date_naive()
        .and_time(NaiveTime::from_hms_opt(hour, 0, 0).expect("an hour of the day"));
    sao_paulo()
        .from_local_datetime(&start)
        .single()
        .expect("a fixed offset maps every local time once")
        .with_timezone(&Utc)
}

/// Parses `--as-of`: an RFC 3339 timestamp, or a date (its start in São Paulo).
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|day| {
            sao_paulo()
                .from_local_datetime(&day.and_time(NaiveTime::MIN))
                .single()
                .expect("a fixed offset maps every local time once")
                .with_timezone(&Utc)
        })
        .map_err(|_| {
            format!(
                "`{text}` is neither a date (2026-12-01, its start in São Paulo) nor an RFC 3339 \
                 timestamp (2026-12-01T06:00:00-03:00)"
            )
        })
}

/// Refuses a cut-off in the future: rows could still be committed before it, so the same
/// snapshot could not be taken twice.
pub fn check_past(cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if cutoff > now - Duration::seconds(1) {
        return Err(format!(
            "the cut-off {cutoff} is not in the past: rows could still be committed before it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_default_is_the_start_of_the_day_in_sao_paulo() {
        // 01:30 UTC is still the previous evening in São Paulo.
        assert_eq!(
            default_cutoff(utc("2026-12-02T01:30:00Z"), None),
            utc("2026-12-01T03:00:00Z")
        );
        assert_eq!(
            default_cutoff(utc("2026-12-02T03:00:00Z"), None),
            utc("2026-12-02T03:00:00Z")
        );
    }

    #[test]
    fn every_n_hours_starts_windows_at_local_midnight() {
        // 14:10 in São Paulo: the 6-hour window began at 12:00, the 5-hour one at 10:00.
        let now = utc("2026-12-02T17:10:00Z");
        assert_eq!(default_cutoff(now, Some(6)), utc("2026-12-02T15:00:00Z"));
        assert_eq!(default_cutoff(now, Some(5)), utc("2026-12-02T13:00:00Z"));
        assert_eq!(default_cutoff(now, Some(1)), utc("2026-12-02T17:00:00Z"));
    }

    #[test]
    fn as_of_takes_dates_and_timestamps() {
        assert_eq!(
            parse_as_of("2026-11-30").unwrap(),
            utc("2026-11-30T03:00:00Z")
        );
        assert_eq!(
            parse_as_of("2026-11-30T12:00:00Z").unwrap(),
            utc("2026-11-30T12:00:00Z")
        );
        assert!(
            parse_as_of("yesterday")
                .unwrap_err()
                .contains("`yesterday`")
        );
        assert!(check_past(utc("2999-01-01T00:00:00Z"), Utc::now()).is_err());
    }
}
