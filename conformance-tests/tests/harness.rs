//! Exercises the server harness against the real binaries. A missing binary
//! fails these tests; nothing is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fencelock_conformance::harness::{
    EtcdCluster, PostgresServer, PostgresServerOptions, RedisServer, RedisServerOptions, TcpProxy,
    etcd_endpoints_or_start, postgres_url_or_start, redis_url_or_start, shared_etcd,
    shared_postgres, shared_redis,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Short timeout used to show that a paused server does not answer.
const SILENT: Duration = Duration::from_millis(300);

/// Send raw bytes, read at most `n` bytes with a read timeout.
fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    n: usize,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut buf = vec![0; n];
    let got = stream.read(&mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

// ---------------------------------------------------------------- redis

#[tokio::test]
async fn redis_without_persistence_restarts_empty_on_same_port() {
    let redis = RedisServer::start(RedisServerOptions::ephemeral())
        .await
        .unwrap();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.command(&["PING"]).await.unwrap(), "+PONG\r\n");
    assert_eq!(redis.command(&["SET", "k", "v"]).await.unwrap(), "+OK\r\n");
    let pid = redis.pid().unwrap();

    redis.kill().unwrap();
    assert_eq!(redis.pid(), None);
    assert!(!process_alive(pid));
    assert!(redis.command(&["PING"]).await.is_err());
    redis.kill().unwrap(); // idempotent

    let port = redis.port();
    redis.restart().await.unwrap();
    assert_ne!(redis.pid(), Some(pid));
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "k"]).await.unwrap(), "$-1\r\n");
    assert!(redis.log_tail().contains("start #2 of redis-server"));
}

#[tokio::test]
async fn redis_aof_keeps_data_across_kill_9() {
    let redis = RedisServer::start(RedisServerOptions::aof()).await.unwrap();
    assert_eq!(
        redis.command(&["SET", "k", "durable"]).await.unwrap(),
        "+OK\r\n"
    );
    redis.kill().unwrap();
    redis.restart().await.unwrap();
    assert_eq!(
        redis.command(&["GET", "k"]).await.unwrap(),
        "$7\r\ndurable\r\n"
    );
    // Restart of a running server kills it first.
    redis.restart().await.unwrap();
    assert_eq!(
        redis.command(&["GET", "k"]).await.unwrap(),
        "$7\r\ndurable\r\n"
    );
}

#[tokio::test]
async fn redis_pause_stops_answers_until_resume() {
    let redis = RedisServer::start(RedisServerOptions::ephemeral())
        .await
        .unwrap();
    let mut conn = TcpStream::connect(redis.addr()).unwrap();
    assert_eq!(
        exchange(&mut conn, b"PING\r\n", 7, SILENT).unwrap(),
        b"+PONG\r\n"
    );

    redis.pause().unwrap();
    let err = exchange(&mut conn, b"PING\r\n", 7, SILENT).unwrap_err();
    assert!(is_timeout(&err), "{err}");

    redis.resume().unwrap();
    // The pending PING is answered once the server runs again.
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0; 7];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+PONG\r\n");
}

#[tokio::test]
async fn redis_replica_follows_primary_and_can_be_promoted() {
    let primary = RedisServer::start(RedisServerOptions::ephemeral())
        .await
        .unwrap();
    let replica = RedisServer::start_replica_of(&primary).await.unwrap();
    primary.command(&["SET", "k", "replicated"]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while replica.command(&["GET", "k"]).await.unwrap() != "$10\r\nreplicated\r\n" {
        assert!(Instant::now() < deadline, "replica never got the key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        replica
            .command(&["SET", "x", "1"])
            .await
            .unwrap()
            .starts_with("-READONLY")
    );

    primary.kill().unwrap();
    assert_eq!(
        replica.command(&["REPLICAOF", "NO", "ONE"]).await.unwrap(),
        "+OK\r\n"
    );
    assert_eq!(
        replica.command(&["SET", "x", "1"]).await.unwrap(),
        "+OK\r\n"
    );
}

#[test]
fn drop_kills_and_removes_the_directory_even_on_panic() {
    let mut seen: Option<(u32, PathBuf)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let redis = RedisServer::start_blocking(RedisServerOptions::aof()).unwrap();
        seen = Some((redis.pid().unwrap(), redis.dir().to_path_buf()));
        panic!("test failure while a server runs");
    }));
    assert!(result.is_err());
    let (pid, dir) = seen.unwrap();
    assert!(!process_alive(pid));
    assert!(!dir.exists());
}

// ---------------------------------------------------------------- postgres

#[tokio::test]
async fn postgres_durable_keeps_table_across_kill_9() {
    let pg = PostgresServer::start(PostgresServerOptions {
        durable: true,
        ..PostgresServerOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
    );
    assert_eq!(pg.psql("SHOW fsync").await.unwrap().trim(), "on");
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        .await
        .unwrap();
    // Keep a backend around: kill() must take it down with the postmaster.
    let mut idle = TcpStream::connect(pg.addr()).unwrap();
    idle.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap(); // SSLRequest

    let pid = pg.pid().unwrap();
    pg.kill().unwrap();
    assert!(!process_alive(pid));
    assert!(pg.psql("SELECT 1").await.is_err());

    pg.restart().await.unwrap();
    assert_eq!(pg.psql("SELECT x FROM t").await.unwrap().trim(), "42");
    // And once more, right after a restart.
    pg.kill().unwrap();
    pg.restart().await.unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM t").await.unwrap().trim(), "1");
}

/// A protocol 3.0 startup packet for user and database `postgres`.
fn startup_packet() -> Vec<u8> {
    let body = b"user\0postgres\0database\0postgres\0\0";
    let len = u32::try_from(8 + body.len()).unwrap();
    let mut packet = len.to_be_bytes().to_vec();
    packet.extend_from_slice(&196_608u32.to_be_bytes());
    packet.extend_from_slice(body);
    packet
}

#[tokio::test]
async fn postgres_pause_stops_answers_until_resume() {
    let pg = PostgresServer::start(PostgresServerOptions::default())
        .await
        .unwrap();
    assert_eq!(pg.psql("SHOW fsync").await.unwrap().trim(), "off");
    let ssl_request = [0, 0, 0, 8, 4, 210, 22, 47];
    // A connection whose backend already exists (backends call setsid(), so
    // pausing the postmaster's process group alone would not stop it).
    let mut existing = TcpStream::connect(pg.addr()).unwrap();
    assert_eq!(
        exchange(&mut existing, &ssl_request, 1, Duration::from_secs(5)).unwrap(),
        b"N"
    );

    pg.pause().unwrap();
    let err = exchange(&mut existing, &startup_packet(), 1, SILENT).unwrap_err();
    assert!(is_timeout(&err), "{err}");
    let mut new = TcpStream::connect(pg.addr()).unwrap();
    let err = exchange(&mut new, &ssl_request, 1, SILENT).unwrap_err();
    assert!(is_timeout(&err), "{err}");

    pg.resume().unwrap();
    let mut buf = [0; 1];
    existing
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    existing.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"R"); // AuthenticationOk (trust)
    new.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    new.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"N");
    assert_eq!(pg.psql("SELECT 1").await.unwrap().trim(), "1");
}

// ---------------------------------------------------------------- etcd

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn etcd_single_node_kill_restart_pause_resume() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    let member = etcd.member(0).unwrap();
    assert_eq!(etcd.endpoints(), vec![member.endpoint()]);
    assert_eq!(etcd.leader().await, Some(0));
    etcdctl(&member.endpoint(), &["put", "k", "v"]);

    member.kill().unwrap();
    assert!(!member.is_healthy().await);
    assert_eq!(etcd.leader().await, None);
    member.restart().await.unwrap();
    assert!(etcdctl(&member.endpoint(), &["get", "k", "--print-value-only"]).contains('v'));

    member.pause().unwrap();
    let started = Instant::now();
    assert!(!member.is_healthy().await);
    assert!(started.elapsed() < Duration::from_secs(2));
    member.resume().unwrap();
    assert!(member.is_healthy().await);
    assert!(etcd.member(1).is_err());
}

#[tokio::test]
async fn etcd_cluster_elects_a_new_leader_after_the_leader_dies() {
    let cluster = EtcdCluster::start(3).await.unwrap();
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.endpoints().len(), 3);
    let old = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .unwrap();

    cluster.member(old).unwrap().kill().unwrap();
    let killed_at = Instant::now();
    let new = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .unwrap();
    let failover = killed_at.elapsed();
    assert_ne!(new, old);
    assert!(failover < Duration::from_secs(5), "{failover:?}");
    eprintln!("etcd failover took {failover:?}");

    // The old leader rejoins with its data directory.
    cluster.member(old).unwrap().restart().await.unwrap();
    for member in cluster.members() {
        assert!(member.is_healthy().await, "{} unhealthy", member.name());
    }
}

// ---------------------------------------------------------------- proxy

async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn roundtrip(
    conn: &mut tokio::net::TcpStream,
    data: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    conn.write_all(data).await.unwrap();
    let mut buf = vec![0; data.len()];
    tokio::time::timeout(timeout, conn.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_delays_stalls_and_cuts() {
    let proxy = TcpProxy::start(echo_server().await).unwrap();
    let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut conn, b"hello", Duration::from_secs(5))
            .await
            .unwrap(),
        b"hello"
    );
    assert_eq!(proxy.connections(), 1);

    proxy.set_delay(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(
        roundtrip(&mut conn, b"slow", Duration::from_secs(5))
            .await
            .unwrap(),
        b"slow"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    proxy.set_delay(Duration::ZERO);

    proxy.stall();
    assert_eq!(roundtrip(&mut conn, b"held", SILENT).await, None);
    proxy.unstall();
    let mut buf = [0; 4];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"held");

    proxy.cut();
    let mut buf = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.connections() != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // New connections work after a cut.
    let mut conn = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        roundtrip(&mut conn, b"again", Duration::from_secs(5))
            .await
            .unwrap(),
        b"again"
    );
}

#[tokio::test]
async fn proxy_in_front_of_redis() {
    let redis = RedisServer::start(RedisServerOptions::ephemeral())
        .await
        .unwrap();
    let proxy = TcpProxy::start(redis.addr()).unwrap();
    let mut conn = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(
        exchange(&mut conn, b"PING\r\n", 7, Duration::from_secs(5)).unwrap(),
        b"+PONG\r\n"
    );
    proxy.cut();
    let mut buf = [0; 1];
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(conn.read(&mut buf), Ok(0) | Err(_)));
}

// ---------------------------------------------------------------- shared servers

#[tokio::test]
async fn shared_servers_start_once() {
    let redis = shared_redis().await.unwrap();
    assert!(std::ptr::eq(redis, shared_redis().await.unwrap()));
    assert_eq!(
        redis.server().unwrap().command(&["PING"]).await.unwrap(),
        "+PONG\r\n"
    );
    assert!(!redis.is_external());

    let pg = shared_postgres().await.unwrap();
    assert!(std::ptr::eq(pg, shared_postgres().await.unwrap()));
    assert_eq!(
        pg.server().unwrap().psql("SELECT 2").await.unwrap().trim(),
        "2"
    );

    let etcd = shared_etcd().await.unwrap();
    assert!(std::ptr::eq(etcd, shared_etcd().await.unwrap()));
    assert_eq!(etcd.endpoints().len(), 1);
    assert!(etcd.server().unwrap().member(0).unwrap().is_healthy().await);
}

/// Run this test binary again, running only `child_process_helper` with the
/// given environment; return its stdout.
fn run_child(mode: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("FENCELOCK_HARNESS_CHILD", mode)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {mode} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("CHILD-DONE {mode}")), "{stdout}");
    stdout
}

/// Not a test of its own: the body of the child processes started by
/// `env_vars_select_external_servers` and `servers_die_with_the_test_process`
/// (it does nothing unless `FENCELOCK_HARNESS_CHILD` is set).
#[tokio::test]
async fn child_process_helper() {
    let Ok(mode) = std::env::var("FENCELOCK_HARNESS_CHILD") else {
        return;
    };
    match mode.as_str() {
        "external" => {
            let redis = shared_redis().await.unwrap();
            assert!(redis.is_external());
            assert_eq!(redis.url(), "redis://10.9.9.9:1");
            let pg = shared_postgres().await.unwrap();
            assert!(pg.is_external());
            assert_eq!(pg.url(), "postgres://u@10.9.9.9:2/db");
            let etcd = shared_etcd().await.unwrap();
            assert!(etcd.is_external());
            assert_eq!(etcd.endpoints(), ["http://10.9.9.9:3", "http://10.9.9.9:4"]);
            assert!(redis_url_or_start().await.unwrap().is_external());
            assert!(postgres_url_or_start().await.unwrap().is_external());
            assert!(etcd_endpoints_or_start().await.unwrap().is_external());
        }
        "orphan" => {
            // Shared servers are never dropped: only PDEATHSIG kills them.
            let redis = shared_redis().await.unwrap().server().unwrap();
            let pg = shared_postgres().await.unwrap().server().unwrap();
            println!(
                "CHILD-SERVER {} {}",
                redis.pid().unwrap(),
                redis.dir().display()
            );
            println!("CHILD-SERVER {} {}", pg.pid().unwrap(), pg.dir().display());
        }
        other => panic!("unknown child mode {other}"),
    }
    println!("CHILD-DONE {mode}");
}

#[test]
fn env_vars_select_external_servers() {
    run_child(
        "external",
        &[
            ("FENCELOCK_REDIS_URL", "redis://10.9.9.9:1"),
            ("FENCELOCK_POSTGRES_URL", "postgres://u@10.9.9.9:2/db"),
            (
                "FENCELOCK_ETCD_ENDPOINTS",
                "http://10.9.9.9:3, http://10.9.9.9:4",
            ),
        ],
    );
}

#[test]
fn servers_die_with_the_test_process() {
    let servers = |stdout: &str| -> Vec<(u32, PathBuf)> {
        stdout
            .lines()
            .filter_map(|l| Some(&l[l.find("CHILD-SERVER ")? + "CHILD-SERVER ".len()..]))
            .map(|l| {
                let (pid, dir) = l.split_once(' ').unwrap();
                (pid.parse().unwrap(), PathBuf::from(dir))
            })
            .collect()
    };
    let first = servers(&run_child("orphan", &[]));
    assert_eq!(first.len(), 2);
    // redis runs as root, postgres as user postgres (setpriv --reuid): both
    // get SIGKILL when the thread that forked them exits with the process.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (pid, _) in &first {
        while process_alive(*pid) {
            assert!(
                Instant::now() < deadline,
                "server {pid} outlived its test process"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The next test process removes the directories left behind.
    let second = servers(&run_child("orphan", &[]));
    for (_, dir) in &first {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    for (pid, _) in &second {
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(*pid) {
            assert!(
                Instant::now() < deadline,
                "server {pid} outlived its test process"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
