//! Helpers for tests that talk to real servers started by `scripts/test.sh`; the PostgreSQL ones
//! are `vitrine_runtime::testing`, re-exported here.
//!
//! A missing server is a failure, never a skip: the helpers panic with the reason.

use secrecy::SecretString;
pub use vitrine_runtime::testing::*;

/// The variable `scripts/test.sh` sets to its throwaway Redis.
pub const REDIS_URL_VAR: &str = "VITRINE_TEST_REDIS_URL";

/// The test Redis URL.
pub fn redis_url() -> SecretString {
    SecretString::from(required_var(REDIS_URL_VAR, "Redis"))
}

/// A Redis of one test's own (the `redis-server` that `scripts/test.sh` installs), so that
/// killing it mid-test disturbs no other test. Killed when dropped.
#[derive(Debug)]
pub struct OwnRedis {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed by scripts/test.sh");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return OwnRedis {
                    child,
                    _dir: dir,
                    url: format!("redis://127.0.0.1:{port}"),
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start");
    }

    pub fn url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }

    /// Stops it for good (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
