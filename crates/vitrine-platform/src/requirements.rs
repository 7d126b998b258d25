//! The settings, checked once at start-up, all at once: a process lists every setting it is
//! missing, that is unsafe in its mode, or that needs another one, then refuses to start,
//! instead of failing on the first and being restarted to find the next. The rules live with
//! the adapters' choices ([`crate::backends`]); this collects their problems. The host asks for
//! what every process uses ([`Requirements::common`]); each service adds the choices it makes.

use crate::backends::Misconfigured;
use crate::{Mode, Settings};

/// The problems found so far, each naming the setting to fix.
#[derive(Debug, Default)]
pub struct Requirements {
    problems: Vec<String>,
}

impl Requirements {
    /// Records what is wrong with one adapter's settings, if anything.
    pub fn check<T>(&mut self, choice: Result<T, Misconfigured>) {
        if let Err(Misconfigured(problems)) = choice {
            for problem in problems {
                // Two services needing the same setting name it once.
                if !self.problems.contains(&problem) {
                    self.problems.push(problem);
                }
            }
        }
    }

    /// What every process uses, whatever services it hosts: how tokens are verified and the
    /// message transport.
    pub fn common(&mut self, settings: &Settings) {
        self.check(settings.token_check());
        self.check(settings.message_transport());
    }

    /// Ok when nothing is wrong; else one error listing every problem.
    pub fn finish(self, settings: &Settings) -> anyhow::Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        let why = match settings.mode {
            Mode::Production => "mode = production, but the configuration is not safe to run",
            Mode::Embedded => "the configuration cannot run",
        };
        anyhow::bail!("{why}:\n  - {}", self.problems.join("\n  - "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Settings {
        let mut settings = Settings::embedded_at(std::path::Path::new("/nonexistent"));
        settings.mode = Mode::Production;
        settings
    }

    #[test]
    fn every_missing_setting_is_named_at_once() {
        let settings = production();
        let mut requirements = Requirements::default();
        requirements.common(&settings);
        let error = requirements.finish(&settings).unwrap_err().to_string();
        for setting in [
            "VITRINE_JWKS_URL",
            "VITRINE_JWT_ISSUER",
            "VITRINE_JWT_AUDIENCE",
            "VITRINE_TRANSPORT",
        ] {
            assert!(error.contains(setting), "{setting} missing from: {error}");
        }
    }

    #[test]
    fn embedded_mode_requires_nothing() {
        let settings = Settings::embedded_at(std::path::Path::new("/nonexistent"));
        let mut requirements = Requirements::default();
        requirements.common(&settings);
        assert!(requirements.finish(&settings).is_ok());
    }
}
