//! The SSRF guard at connection time, against a real listener on loopback: under the production
//! policy no connection ever reaches it (whether the URL names the address or a host name that
//! resolves to it); under the embedded policy, or when an operator allows the network, it does.
//! Only loopback is ever dialled here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vitrine_webhooks::address_policy::AddressPolicy;

/// A loopback listener that counts connections and answers each with an empty 200.
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // The whole request (headers and the two-byte body) before the answer.
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n{}") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, connections)
}

async fn deliver(policy: AddressPolicy, url: &str) -> Result<u16, String> {
    let policy = Arc::new(policy);
    let url = policy.check_url(url).map_err(|e| e.to_string())?;
    let client = policy.client(Duration::from_secs(2)).unwrap();
    client
        .post(url)
        .body("{}")
        .send()
        .await
        .map(|response| response.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn production_never_connects_to_loopback() {
    let (port, connections) = receiver().await;
    for url in [
        format!("https://127.0.0.1:{port}/hook"),
        format!("https://[::ffff:127.0.0.1]:{port}/hook"),
        format!("https://localhost:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let refused = deliver(AddressPolicy::production(vec![]), &url)
            .await
            .expect_err(&url);
        assert!(
            refused.contains("loopback")
                || refused.contains("https")
                || refused.contains("no public address"),
            "{url}: {refused}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a refused address was dialled"
    );
}

#[tokio::test]
async fn embedded_mode_and_allow_lists_reach_the_receiver() {
    let (port, connections) = receiver().await;
    let status = deliver(
        AddressPolicy::embedded(vec![]),
        &format!("http://localhost:{port}/hook"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // Allowed by the operator: the connection is made (the TLS handshake then fails, since the
    // receiver speaks plain HTTP; what matters is that the guard let it through).
    let allowed = AddressPolicy::production(vec!["127.0.0.0/8".parse().unwrap()]);
    let _ = deliver(allowed, &format!("https://localhost:{port}/hook")).await;
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// At registration a host name that resolves only to refused addresses is refused too, and the
/// message does not say what it resolved to (it is shown to the endpoint's owner).
#[tokio::test]
async fn registration_refuses_names_of_private_hosts_without_naming_their_addresses() {
    let production = AddressPolicy::production(vec![]);
    let url = production.check_url("https://localhost:8443/hook").unwrap();
    let refused = production.check_host(&url).await.unwrap_err().to_string();
    assert_eq!(refused, "localhost resolves to no public address");
    let embedded = AddressPolicy::embedded(vec![]);
    let url = embedded.check_url("http://localhost:8443/hook").unwrap();
    assert!(embedded.check_host(&url).await.is_ok());
}
