//! Exponential backoff with jitter, so retries of many failed messages spread out instead of
//! arriving together.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (1-based): doubling from `base`, capped at `max`,
/// then a random point in its upper half ("equal jitter": never less than half the step).
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let step = base.saturating_mul(1u32 << exponent).min(max);
    let half = step / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_in_the_upper_half() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for attempt in 1..40 {
            let step = (base * 2u32.pow((attempt - 1).min(30))).min(max);
            for _ in 0..20 {
                let d = delay(attempt, base, max);
                assert!(
                    d >= step / 2 && d <= step,
                    "attempt {attempt}: {d:?} not in [{:?}, {step:?}]",
                    step / 2
                );
            }
        }
    }
}
