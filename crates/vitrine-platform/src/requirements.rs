//! Production settings, checked once at start-up, all at once: a process in `mode = production`
//! lists every setting it is missing or that is unsafe, then refuses to start, instead of
//! failing on the first and being restarted to find the next. The host checks what every
//! process needs ([`Requirements::common`]); each service adds its own.

use crate::{Mode, Settings, TransportKind};

/// The problems found so far, each naming the setting to fix.
#[derive(Debug, Default)]
pub struct Requirements {
    problems: Vec<String>,
}

impl Requirements {
    /// `setting` must be set: `why` says what for.
    pub fn require(&mut self, present: bool, setting: &str, why: &str) {
        if !present {
            self.add(format!("{setting}: {why}"));
        }
    }

    /// Two services needing the same setting name it once.
    fn add(&mut self, problem: String) {
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    /// `url` (the value of `setting`), when set, must use https unless it points at this
    /// machine (tests, sidecars).
    pub fn https(&mut self, url: Option<&str>, setting: &str) {
        let Some(url) = url else { return };
        match reqwest::Url::parse(url) {
            Ok(parsed) if parsed.scheme() == "https" || is_loopback(&parsed) => {}
            Ok(_) => self.add(format!(
                "{setting}: must be an https URL in production (tokens and secrets travel over it)"
            )),
            Err(_) => self.add(format!("{setting}: is not a URL")),
        }
    }

    /// What every production process needs, whatever services it hosts: tokens verified
    /// against the identity provider for this application only, and SNS/SQS.
    pub fn common(&mut self, settings: &Settings) {
        self.require(
            settings.jwks_url.is_some(),
            "VITRINE_JWKS_URL",
            "the identity provider's key set, which tokens are verified against",
        );
        self.https(settings.jwks_url.as_deref(), "VITRINE_JWKS_URL");
        self.require(
            settings.jwt_issuer.is_some(),
            "VITRINE_JWT_ISSUER",
            "the `iss` every token must carry (the identity provider's issuer)",
        );
        self.require(
            settings.jwt_audience.is_some(),
            "VITRINE_JWT_AUDIENCE",
            "the `aud` every token must carry, so tokens the same provider issued for another \
             application are refused",
        );
        self.require(
            settings.transport == TransportKind::Sqs,
            "VITRINE_TRANSPORT",
            "must be `sqs` (SNS topics and SQS queues; the embedded queues are for one process)",
        );
    }

    /// Services that keep secrets (card numbers and PIX keys; webhook signing secrets) keep
    /// them in Vault, reached over https, with a way to log in.
    pub fn vault(&mut self, settings: &Settings) {
        self.require(
            settings.vault_addr.is_some(),
            "VITRINE_VAULT_ADDR",
            "secrets (card numbers, PIX keys, webhook signing secrets) live in Vault, never in \
             local files",
        );
        self.https(settings.vault_addr.as_deref(), "VITRINE_VAULT_ADDR");
        self.require(
            settings.vault_token.is_some()
                || (settings.vault_role_id.is_some() && settings.vault_secret_id.is_some()),
            "VITRINE_VAULT_TOKEN (or VITRINE_VAULT_ROLE_ID and VITRINE_VAULT_SECRET_ID)",
            "how the services log in to Vault",
        );
    }

    /// Services that take `Idempotency-Key` key its request fingerprints with a shared secret,
    /// the same on every replica.
    pub fn fingerprint_key(&mut self, settings: &Settings) {
        self.require(
            settings.fingerprint_key.is_some(),
            "VITRINE_FINGERPRINT_KEY",
            "base64 of 32 bytes keying idempotency fingerprints",
        );
    }

    /// Ok when nothing is missing; else one error listing every problem.
    pub fn finish(self, settings: &Settings) -> anyhow::Result<()> {
        if settings.mode != Mode::Production || self.problems.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "mode = production, but the configuration is not safe to run:\n  - {}",
            self.problems.join("\n  - ")
        )
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
    fn plain_http_is_refused_except_on_this_machine() {
        let mut requirements = Requirements::default();
        requirements.https(Some("http://id.example.com/jwks"), "A");
        requirements.https(Some("https://id.example.com/jwks"), "B");
        requirements.https(Some("http://127.0.0.1:8200"), "C");
        requirements.https(Some("http://localhost:8200"), "D");
        requirements.https(Some("http://[::1]:8200"), "E");
        let error = requirements.finish(&production()).unwrap_err().to_string();
        assert!(error.contains("A: must be an https URL"), "{error}");
        for fine in ["B:", "C:", "D:", "E:"] {
            assert!(!error.contains(fine), "{fine} in {error}");
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
