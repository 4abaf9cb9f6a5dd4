//! Managed Redis: `rediss://` with a CA file and a client certificate (mutual TLS), on one
//! Redis and on a Redis Cluster, an ACL user whose password comes from a file, and the clear
//! startup errors when the CA, the host name, the certificate's dates or the password are
//! wrong. The certificates are made here with `openssl`.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::cluster::one_topic_per_shard;
use harness::{PATIENCE, publish, start_gateway_with};
use sse_core::schema::Retention;
use sse_publisher::{Publisher, RedisFlags};
use sse_testkit::{ClusterTls, RedisCluster, RedisServer, free_port};
use tempfile::TempDir;

/// A CA, a server certificate for 127.0.0.1, one for another host and one for 127.0.0.1 that
/// expired yesterday, a client certificate, and an unrelated CA, as PEM files in a temporary
/// directory.
struct Certificates {
    dir: TempDir,
}

impl Certificates {
    fn make() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sh = |script: &str| {
            let output = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (apt-get install -y openssl)");
            assert!(
                output.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ca = |name: &str| {
            format!(
                "openssl req -x509 -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.crt -days 2 -subj /CN={name}"
            )
        };
        // Valid from now for `days` days: -1 makes one that expired a day ago.
        let signed = |name: &str, extensions: &str, days: i32| {
            format!(
                "openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}
                 printf '{extensions}\\n' > {name}.ext
                 openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {name}.crt -days {days} -extfile {name}.ext"
            )
        };
        sh(&ca("ca"));
        sh(&ca("other-ca"));
        let local = "subjectAltName=IP:127.0.0.1,DNS:localhost";
        sh(&signed("server", local, 2));
        sh(&signed("expired", local, -1));
        sh(&signed(
            "elsewhere",
            "subjectAltName=DNS:redis.elsewhere.example",
            2,
        ));
        sh(&signed("client", "extendedKeyUsage=clientAuth", 2));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A Redis serving TLS on a port of its own (clients must show a certificate of `ca`)
/// with the server certificate `server`; returns it and the TLS port.
fn tls_redis(certificates: &Certificates, server: &str) -> (RedisServer, u16) {
    let port = free_port();
    let redis = RedisServer::start_with_args(&[
        "--tls-port".into(),
        port.to_string().into(),
        "--tls-cert-file".into(),
        certificates.path(&format!("{server}.crt")).into(),
        "--tls-key-file".into(),
        certificates.path(&format!("{server}.key")).into(),
        "--tls-ca-cert-file".into(),
        certificates.path("ca.crt").into(),
        "--tls-auth-clients".into(),
        "yes".into(),
    ]);
    (redis, port)
}

/// The TLS flags for `ca` and the client certificate.
fn tls_flags<'a>(certificates: &'a Certificates, ca: &'a str) -> Vec<String> {
    vec![
        "--redis-ca-file".into(),
        certificates.arg(ca),
        "--redis-client-cert".into(),
        certificates.arg("client.crt"),
        "--redis-client-key".into(),
        certificates.arg("client.key"),
    ]
}

fn publisher_flags(url: String, certificates: &Certificates, ca: &str) -> RedisFlags {
    RedisFlags {
        redis_url: url,
        redis_ca_file: Some(certificates.path(ca)),
        redis_client_cert: Some(certificates.path("client.crt")),
        redis_client_key: Some(certificates.path("client.key")),
        ..RedisFlags::default()
    }
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a file");
    path
}

#[tokio::test]
async fn over_mutual_tls_events_are_published_and_received() {
    let certificates = Certificates::make();
    let (_redis, port) = tls_redis(&certificates, "server");
    let url = format!("rediss://127.0.0.1:{port}");
    let mut args = vec!["--redis-url".to_owned(), url.clone()];
    args.extend(tls_flags(&certificates, "ca.crt"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway = start_gateway_with(&args);
    let mut client = gateway.subscribe(&["secure"]).await;
    let publisher = Publisher::connect(
        &publisher_flags(url, &certificates, "ca.crt"),
        Retention::default(),
    )
    .await
    .expect("connects over TLS");
    let id = publish(&publisher, "secure", None, "over tls").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("over tls", id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_mutual_tls_delivers_topics_on_every_shard_and_never_uses_a_plain_port() {
    let certificates = Certificates::make();
    let cluster = RedisCluster::start_with_tls(ClusterTls {
        cert: certificates.path("server.crt"),
        key: certificates.path("server.key"),
        ca: certificates.path("ca.crt"),
    });
    let seeds = cluster.tls_seeds();
    let mut args = vec![
        "--redis-cluster".to_owned(),
        "--redis-url".to_owned(),
        seeds.clone(),
    ];
    args.extend(tls_flags(&certificates, "ca.crt"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway = start_gateway_with(&args);
    let topics = one_topic_per_shard(&cluster);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut client = gateway.subscribe(&names).await;
    let flags = RedisFlags {
        redis_cluster: true,
        ..publisher_flags(seeds, &certificates, "ca.crt")
    };
    let publisher = Publisher::connect(&flags, Retention::default())
        .await
        .expect("connects to the cluster over TLS");
    for name in &names {
        publish(&publisher, name, None, name).await;
    }
    let mut received: Vec<String> = client
        .events(names.len(), PATIENCE)
        .await
        .into_iter()
        .map(|event| event.data)
        .collect();
    // Each shard's events come over its own connection: topics interleave in no set order.
    received.sort();
    let mut published = names.clone();
    published.sort();
    assert_eq!(received, published, "one event from each shard");

    // Redis lists each connection with the address it arrived on (`laddr`): on every master,
    // the gateway's and the publisher's arrived on the TLS port; only this one on the plain port.
    for master in cluster.masters() {
        let mut redis = cluster.connection(master);
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut redis)
            .expect("CLIENT LIST");
        let plain = format!("laddr=127.0.0.1:{master} ");
        let on_plain = clients.lines().filter(|line| line.contains(&plain)).count();
        assert_eq!(on_plain, 1, "master {master}, clients:\n{clients}");
        let pubsub = clients
            .lines()
            .filter(|line| line.contains(" flags=P ") && !line.contains(&plain))
            .count();
        assert!(
            pubsub >= 1,
            "master {master} serves the gateway's sharded subscriptions over TLS:\n{clients}"
        );
    }
}

#[tokio::test]
async fn a_wrong_ca_another_hosts_or_an_expired_certificate_fails_at_startup_and_says_so() {
    let certificates = Certificates::make();
    let (_redis, port) = tls_redis(&certificates, "server");
    let (_elsewhere, elsewhere_port) = tls_redis(&certificates, "elsewhere");
    let (_expired, expired_port) = tls_redis(&certificates, "expired");
    for (port, ca, reason) in [
        (port, "other-ca.crt", "UnknownIssuer"),
        (elsewhere_port, "ca.crt", "not valid for name"),
        (expired_port, "ca.crt", "Expired"),
    ] {
        let url = format!("rediss://127.0.0.1:{port}");
        let mut args = vec!["--redis-url".to_owned(), url.clone()];
        args.extend(tls_flags(&certificates, ca));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let error = start_gateway_with(&args)
            .stop()
            .expect_err("the gateway refuses to start");
        let message = sse_core::ErrorChain(&error).to_string();
        assert!(
            message.contains("the TLS connection to redis failed")
                && message.contains("invalid peer certificate")
                && message.contains(reason),
            "{message}"
        );
        let Err(error) = Publisher::connect(
            &publisher_flags(url, &certificates, ca),
            Retention::default(),
        )
        .await
        else {
            panic!("the publisher started with {ca} against port {port}");
        };
        let message = sse_core::ErrorChain(&error).to_string();
        assert!(
            message.contains("the TLS connection to redis failed") && message.contains(reason),
            "{message}"
        );
    }
}

#[tokio::test]
async fn an_acl_user_with_its_password_in_a_file_works_and_a_wrong_one_fails_at_startup() {
    let redis = RedisServer::start();
    let mut admin = redis.connection();
    // Exactly the permissions the README lists for each binary.
    let users = [
        (
            "gateway",
            "+info +ping +time +xrange +xrevrange +xinfo +xlen +subscribe +unsubscribe +ssubscribe +sunsubscribe +spublish +cluster|info +set +hset +hdel +pexpire +del +zadd +zrem +zremrangebyscore",
        ),
        (
            "publisher",
            "+fcall +function|load +multi +exec +wait +ping +info +cluster|info +xadd +xtrim +publish +spublish +time +hmget +hset +pexpire +hgetall +mget +xlen +xrange +xrevrange +zrange +zunion",
        ),
    ];
    for (user, commands) in users {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("reset")
            .arg("on")
            .arg(">right-password")
            .arg("~sse:*")
            .arg("&sse:*")
            .arg(commands.split(' ').collect::<Vec<_>>())
            .exec(&mut admin)
            .expect("ACL SETUSER");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let right = write_file(dir.path(), "right", "right-password\n");
    let wrong = write_file(dir.path(), "wrong", "wrong-password");
    let url = format!("redis://gateway@127.0.0.1:{}", redis.port());
    let publisher_url = format!("redis://publisher@127.0.0.1:{}", redis.port());

    let gateway = start_gateway_with(&[
        "--redis-url",
        &url,
        "--redis-password-file",
        &right.display().to_string(),
    ]);
    let mut client = gateway.subscribe(&["acl"]).await;
    let flags = |file: &Path| RedisFlags {
        redis_url: publisher_url.clone(),
        redis_password_file: Some(file.to_owned()),
        ..RedisFlags::default()
    };
    let publisher = Publisher::connect(&flags(&right), Retention::default())
        .await
        .expect("the right password");
    let id = publish(&publisher, "acl", None, "as the publisher").await;
    assert_eq!(client.next_event(PATIENCE).await.last_event_id, id);

    let error = start_gateway_with(&[
        "--redis-url",
        &url,
        "--redis-password-file",
        &wrong.display().to_string(),
    ])
    .stop()
    .expect_err("a wrong password stops the gateway");
    let message = sse_core::ErrorChain(&error).to_string();
    assert!(
        message.contains("redis refused the credentials"),
        "{message}"
    );
    assert!(!message.contains("wrong-password"), "{message}");
    let Err(error) = Publisher::connect(&flags(&wrong), Retention::default()).await else {
        panic!("the publisher started with a wrong password");
    };
    let message = sse_core::ErrorChain(&error).to_string();
    assert!(
        message.contains("redis refused the credentials"),
        "{message}"
    );
}
