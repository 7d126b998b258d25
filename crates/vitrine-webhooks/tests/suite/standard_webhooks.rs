//! Interoperability with an independent implementation: the Standard Webhooks project's own
//! Python library (`standardwebhooks`, installed by scripts/test-servers.sh) verifies what this
//! crate signs, including both signatures of a rotated endpoint, and signs what this crate
//! verifies.

use std::io::Write;
use std::process::{Command, Stdio};

use vitrine_webhooks::secret::WebhookSecret;
use vitrine_webhooks::signature::{signature, verify};

const SCRIPT: &str = r#"
import json, sys
from datetime import datetime, timezone
from standardwebhooks.webhooks import Webhook

case = json.load(sys.stdin)
headers = {
    "webhook-id": case["id"],
    "webhook-timestamp": str(case["timestamp"]),
    "webhook-signature": case["signature"],
}
results = {}
for name, secret in case["secrets"].items():
    try:
        Webhook(secret).verify(case["body"], headers)
        results[name] = "verified"
    except Exception as error:
        results[name] = "refused: %s" % error
stamp = datetime.fromtimestamp(case["timestamp"], tz=timezone.utc)
results["python_signature"] = Webhook(case["secrets"]["old"]).sign(case["id"], stamp, case["body"])
print(json.dumps(results))
"#;

fn python() -> String {
    std::env::var("VITRINE_TEST_PYTHON").expect(
        "VITRINE_TEST_PYTHON is not set: this test needs the Python that scripts/test.sh \
         prepares (with the standardwebhooks package)",
    )
}

#[test]
fn the_reference_library_verifies_our_signatures_and_we_verify_its() {
    let (old, new, stranger) = (
        WebhookSecret::generate(),
        WebhookSecret::generate(),
        WebhookSecret::generate(),
    );
    let id = "msg_2f7Vq4dGz9";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = r#"{"type":"batch.completed","timestamp":"2026-12-01T12:00:00Z","data":{"part":1}}"#;
    let header = signature(&[&new, &old], id, now, body.as_bytes());
    let case = serde_json::json!({
        "id": id,
        "timestamp": now,
        "body": body,
        "signature": header,
        "secrets": {
            "old": &*old.expose(),
            "new": &*new.expose(),
            "stranger": &*stranger.expose(),
        },
    });

    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results["old"], "verified", "{results}");
    assert_eq!(results["new"], "verified", "{results}");
    assert!(
        results["stranger"].as_str().unwrap().starts_with("refused"),
        "{results}"
    );
    let theirs = results["python_signature"].as_str().unwrap();
    assert_eq!(
        verify(&old, id, &now.to_string(), theirs, body.as_bytes(), now),
        Ok(())
    );
    assert_eq!(theirs, signature(&[&old], id, now, body.as_bytes()));
}
