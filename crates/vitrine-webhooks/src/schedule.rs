//! When a failed delivery is tried again. The default is Svix's schedule (the reference for
//! webhook delivery): immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, about
//! a day and a half in all, each delay spread by up to ±20 % so that the retries of a receiver's
//! outage do not all arrive in the same second when it comes back. The schedule is
//! configuration (`VITRINE_WEBHOOK_RETRY_SCHEDULE`), so a test can shorten it.

use std::time::Duration;

use rand::Rng;

/// Delays before each attempt: the first is the initial delivery's, each later one follows a
/// failure. A message fails for good when every attempt has failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// The longest a receiver's `Retry-After` may push an attempt back: past this, the schedule's
/// own delay is used (a receiver cannot park a message for a week).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a schedule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a retry schedule: a comma-separated list of delays such as `0,5s,5m,30m,2h` \
     (units ms, s, m, h)"
)]
pub struct ScheduleError(String);

impl Default for RetrySchedule {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        RetrySchedule {
            delays: vec![
                Duration::ZERO,
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
        }
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<RetrySchedule, ScheduleError> {
        let invalid = || ScheduleError(text.to_owned());
        let delays = text
            .split(',')
            .map(|item| {
                let item = item.trim();
                let digits = item.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let value: u64 = digits.parse().map_err(|_| invalid())?;
                let unit = match &item[digits.len()..] {
                    "ms" => Duration::from_millis(1),
                    "" | "s" => Duration::from_secs(1),
                    "m" => Duration::from_secs(60),
                    "h" => Duration::from_secs(3600),
                    _ => return Err(invalid()),
                };
                unit.checked_mul(u32::try_from(value).map_err(|_| invalid())?)
                    .ok_or_else(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err(invalid());
        }
        Ok(RetrySchedule { delays })
    }
}

impl RetrySchedule {
    /// How many attempts a message gets in all.
    pub fn attempts(&self) -> usize {
        self.delays.len()
    }

    /// The delay before attempt number `attempt` (0: the first delivery), jittered; `None`
    /// when the schedule has no such attempt (the message has failed for good). A receiver's
    /// `Retry-After` (bounded by [`MAX_RETRY_AFTER`]) is honoured when it asks for longer.
    pub fn delay_before(&self, attempt: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let planned = *self.delays.get(attempt)?;
        let jittered = planned.mul_f64(rand::rng().random_range(0.8..=1.2));
        Some(match retry_after {
            Some(asked) if asked > jittered && asked <= MAX_RETRY_AFTER => asked,
            _ => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_svix_schedule_with_jitter() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 8);
        assert_eq!(schedule.delay_before(0, None), Some(Duration::ZERO));
        let second = schedule.delay_before(1, None).unwrap();
        assert!(
            (Duration::from_secs(4)..=Duration::from_secs(6)).contains(&second),
            "{second:?}"
        );
        let last = schedule.delay_before(7, None).unwrap();
        assert!(last >= Duration::from_secs(8 * 3600), "{last:?}");
        assert_eq!(schedule.delay_before(8, None), None, "exhausted");
    }

    #[test]
    fn retry_after_can_only_lengthen_a_delay_within_a_day() {
        let schedule = RetrySchedule::default();
        let asked = Duration::from_secs(120);
        assert_eq!(schedule.delay_before(1, Some(asked)), Some(asked));
        let shorter = schedule
            .delay_before(3, Some(Duration::from_secs(1)))
            .unwrap();
        assert!(shorter >= Duration::from_secs(24 * 60), "{shorter:?}");
        let absurd = schedule
            .delay_before(1, Some(Duration::from_secs(7 * 24 * 3600)))
            .unwrap();
        assert!(absurd <= Duration::from_secs(6), "{absurd:?}");
    }

    #[test]
    fn schedules_parse_from_configuration() {
        let schedule: RetrySchedule = "0, 100ms, 2s, 1m".parse().unwrap();
        assert_eq!(schedule.attempts(), 4);
        assert_eq!(
            "0,5s,5m,30m,2h,5h,10h,10h"
                .parse::<RetrySchedule>()
                .unwrap(),
            RetrySchedule::default()
        );
        for bad in ["", "5x", "soon", "1,,2", "-1s"] {
            assert!(bad.parse::<RetrySchedule>().is_err(), "{bad:?}");
        }
    }
}
