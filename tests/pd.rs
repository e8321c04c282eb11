//! The PD-compatible gRPC door (`serve --pd`) with real processes, through
//! the door's own generated client (PD's names and field numbers): a single
//! node (smol runtime) answers GetMembers, GetClusterInfo, Health and a
//! pipelined Tso stream in order, refuses what PD refuses, and its metrics
//! count the door's calls exactly; a mixed std/smol cluster lists every
//! member and the one leader on every node, a follower ends the stream
//! "not leader", and a PD-style client (GetMembers, then the leader's
//! stream) follows a kill -9 of the leader with timestamps that strictly
//! increase; under TLS the door speaks HTTPS and wants a client certificate.
//! The clients no one here wrote (`tikv-client`) are in `interop/`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leasetso_grpc::pdpb::pd_client::PdClient;
use leasetso_grpc::pdpb::{
    GetClusterInfoRequest, GetMembersRequest, GetMembersResponse, RequestHeader, ServiceMode, TsoRequest,
    TsoResponse,
};
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
use leasetso_tests::{
    Runtime, ServerProcess, TestCerts, Transport, data_dir, http_get, metric, metrics_addr,
};
use tempfile::TempDir;
use tonic::transport::Channel;

/// The PD door's address in a node's log ("leasetso: PD on ADDR").
fn pd_addr(log: &str) -> SocketAddr {
    log.lines()
        .find(|l| l.contains("PD on"))
        .and_then(leasetso_tests::parse_loopback_addr)
        .unwrap_or_else(|| panic!("no 'PD on' line in the log:\n{log}"))
}

/// A single node on `runtime` with its PD door on a free port and `extra`
/// flags, reached over `transport` (plaintext if `None`), once it serves:
/// its data dir (kept while the test runs), the process, the door's address.
fn pd_node(
    runtime: Runtime,
    extra: &[&str],
    transport: Option<Transport>,
) -> (TempDir, ServerProcess, SocketAddr) {
    let dir = data_dir();
    let args: Vec<&str> = ["--pd", "127.0.0.1:0"].iter().chain(extra).copied().collect();
    let server = ServerProcess::try_start_runtime(runtime, "127.0.0.1:0", dir.path(), &args)
        .unwrap_or_else(|f| panic!("{f}"));
    let server = match transport {
        Some(t) => server.over(t),
        None => server,
    };
    server.wait_serving();
    let pd = pd_addr(&server.log().text());
    (dir, server, pd)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

async fn connect(url: String) -> PdClient<Channel> {
    let channel = Channel::from_shared(url.clone())
        .expect("a URL")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    PdClient::new(channel)
}

fn header(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader { cluster_id, ..RequestHeader::default() })
}

fn tso_request(cluster_id: u64, count: u32) -> TsoRequest {
    TsoRequest { header: header(cluster_id), count, dc_location: String::new() }
}

/// The packed timestamp of a response (the last of its range).
fn packed(r: &TsoResponse) -> u64 {
    let ts = r.timestamp.expect("a timestamp");
    assert_eq!(ts.suffix_bits, 0);
    ((ts.physical as u64) << 18) | ts.logical as u64
}

/// Sends `requests` on one stream at once and reads every answer.
async fn tso_all(
    client: &mut PdClient<Channel>,
    requests: Vec<TsoRequest>,
) -> Result<Vec<TsoResponse>, tonic::Status> {
    let n = requests.len();
    let mut answers = client.tso(tokio_stream::iter(requests)).await?.into_inner();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match answers.message().await? {
            Some(r) => out.push(r),
            None => break,
        }
    }
    Ok(out)
}

/// The error a one-request stream ends with.
async fn tso_error(client: &mut PdClient<Channel>, request: TsoRequest) -> tonic::Status {
    match tso_all(client, vec![request]).await {
        Ok(answers) => panic!("expected the stream to fail, got {answers:?}"),
        Err(status) => status,
    }
}

#[test]
fn a_single_node_answers_pd_clients_in_order_and_counts_them() {
    let (_dir, server, pd) =
        pd_node(Runtime::Smol, &["--metrics", "127.0.0.1:0", "--cluster-id", "42"], None);
    let m = metrics_addr(&server.log().text());
    let scrape = || http_get(m, "/metrics").expect("GET /metrics").1;
    let rt = runtime();
    rt.block_on(async {
        let mut client = connect(format!("http://{pd}")).await;

        // GetMembers: one member, the leader, with this door's URL; the
        // header names the cluster (the Go client refuses 0).
        let members =
            client.get_members(GetMembersRequest { header: None }).await.expect("GetMembers").into_inner();
        assert_eq!(members.header.as_ref().map(|h| h.cluster_id), Some(42));
        assert_eq!(members.members.len(), 1);
        let leader = members.leader.clone().expect("a leader");
        assert_eq!(leader.client_urls, vec![format!("http://{pd}")]);
        assert_eq!((leader.name.as_str(), leader.member_id), ("leasetso-1", 1));

        // GetClusterInfo: PD mode.
        let info = client
            .get_cluster_info(GetClusterInfoRequest { header: None })
            .await
            .expect("GetClusterInfo")
            .into_inner();
        assert_eq!(info.service_modes, vec![ServiceMode::PdSvcMode as i32]);

        // Health: the server, and pdpb.PD on the node that serves.
        let mut health = tonic_health::pb::health_client::HealthClient::new(
            Channel::from_shared(format!("http://{pd}")).unwrap().connect().await.expect("connect"),
        );
        // (pdpb.PD's status follows the node within 100 ms.)
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        for service in ["", "pdpb.PD"] {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let r = health
                    .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
                    .await
                    .unwrap_or_else(|e| panic!("Health/Check {service:?}: {e}"))
                    .into_inner();
                if r.status == serving {
                    break;
                }
                assert!(Instant::now() < deadline, "Health/Check {service:?}: {r:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // Tso: 200 requests sent at once on one stream, answered in order
        // with their counts, ranges strictly after one another (T1).
        let before = scrape();
        let counts: Vec<u32> = (0..200u32).map(|i| 1 + i % 37).collect();
        let requests = counts.iter().map(|&c| tso_request(42, c)).collect();
        let answers = tso_all(&mut client, requests).await.expect("Tso");
        assert_eq!(answers.len(), counts.len());
        let mut last = 0u64;
        for (answer, &count) in answers.iter().zip(&counts) {
            assert_eq!(answer.count, count, "each answer carries its request's count");
            assert_eq!(answer.header.as_ref().map(|h| h.cluster_id), Some(42));
            let end = packed(answer);
            let first = end - u64::from(count) + 1;
            assert!(first > last, "range {first}..={end} overlaps or precedes {last}");
            last = end;
        }
        let after = scrape();
        let grpc = |text: &str, result: &str| {
            metric(text, "leasetso_tso_requests_total", &format!(r#"door="grpc",result="{result}""#))
                .unwrap_or(0.0)
        };
        assert_eq!(grpc(&after, "ok") - grpc(&before, "ok"), 200.0, "ok requests of the gRPC door");
        let stamps = |t: &str| metric(t, "leasetso_tso_timestamps_total", r#"door="grpc""#).unwrap_or(0.0);
        let asked: u32 = counts.iter().sum();
        assert_eq!(stamps(&after) - stamps(&before), f64::from(asked));

        // What PD refuses, the door refuses, each ending its stream (G1, T2).
        let e = tso_error(&mut client, tso_request(7, 1)).await;
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert_eq!(e.message(), "mismatch cluster id, need 42 but got 7");
        let e = tso_error(&mut client, tso_request(42, 0)).await;
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        let e = tso_error(&mut client, tso_request(42, 1 << 20)).await;
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        let mut dc = tso_request(42, 1);
        dc.dc_location = "dc-2".into();
        let e = tso_error(&mut client, dc).await;
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        // Answers made before a refusal still go out, then the status.
        let mut answers = client
            .tso(tokio_stream::iter(vec![tso_request(42, 3), tso_request(9, 1), tso_request(42, 1)]))
            .await
            .expect("Tso")
            .into_inner();
        let first = answers.message().await.expect("the first answer").expect("one");
        assert_eq!(first.count, 3);
        assert!(packed(&first) > last);
        let e = answers.message().await.expect_err("then the refusal");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);

        // The project's PD-style client: 64 callers batched into one
        // pipelined stream; every timestamp distinct, each caller's
        // increasing, all above what was handed out before.
        let pd_client =
            leasetso_grpc::PdTsoClient::connect(&format!("http://{pd}"), 42).await.expect("connect");
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let c = pd_client.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..50 {
                        mine.push(c.get_ts().await.expect("get_ts"));
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for caller in callers {
            let mine = caller.await.expect("a caller");
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "a caller's timestamps went backwards");
            all.extend(mine);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a timestamp handed out twice");
        assert!(all[0] > packed(&first));
    });
    server.stop();
}

/// Every node's GetMembers, or the first error.
async fn all_members(urls: &[String]) -> Vec<GetMembersResponse> {
    let mut out = Vec::new();
    for url in urls {
        let mut c = connect(url.clone()).await;
        out.push(c.get_members(GetMembersRequest { header: None }).await.expect("GetMembers").into_inner());
    }
    out
}

/// What a PD client does: asks the members for the leader, opens a stream
/// there and takes `n` timestamps one request at a time; on an error, asks
/// again, until `on_ts` says stop or `until`. Returns the leader URLs it used.
async fn pd_style_client(
    seeds: &[String],
    cluster_id: u64,
    until: Instant,
    mut on_ts: impl FnMut(u64) -> bool,
) -> Vec<String> {
    let mut leaders = Vec::new();
    'discover: while Instant::now() < until {
        for seed in seeds {
            let Ok(channel) = Channel::from_shared(seed.clone())
                .unwrap()
                .connect_timeout(Duration::from_millis(300))
                .connect()
                .await
            else {
                continue;
            };
            let Ok(members) = PdClient::new(channel).get_members(GetMembersRequest { header: None }).await
            else {
                continue;
            };
            let Some(url) = members.into_inner().leader.and_then(|l| l.client_urls.into_iter().next()) else {
                continue;
            };
            let Ok(channel) = Channel::from_shared(url.clone())
                .unwrap()
                .connect_timeout(Duration::from_millis(300))
                .connect()
                .await
            else {
                continue;
            };
            let mut client = PdClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let Ok(answers) = client.tso(tokio_stream::wrappers::ReceiverStream::new(rx)).await else {
                continue;
            };
            leaders.push(url);
            let mut answers = answers.into_inner();
            loop {
                if tx.send(tso_request(cluster_id, 1)).await.is_err() {
                    continue 'discover;
                }
                match tokio::time::timeout(Duration::from_secs(2), answers.message()).await {
                    Ok(Ok(Some(answer))) => {
                        if !on_ts(packed(&answer)) {
                            return leaders;
                        }
                    }
                    _ => continue 'discover,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    leaders
}

#[test]
fn a_mixed_cluster_names_one_leader_everywhere_and_pd_clients_follow_a_kill_9() {
    let _serial = exclusive();
    let opts = ClusterOptions {
        cluster_id: Some(9),
        extra_args: vec!["--pd".into(), "127.0.0.1:0".into()],
        runtimes: vec![Runtime::Smol, Runtime::Std, Runtime::Std],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, opts);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let urls: Vec<String> = (0..3).map(|i| format!("http://{}", pd_addr(&cluster.log(i)))).collect();
    let rt = runtime();
    rt.block_on(async {
        // Every node lists all three members with their URLs and names the
        // same leader (the links have carried every door's address).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answers = all_members(&urls).await;
            let agreed = answers.iter().all(|a| {
                let listed: Vec<_> = a.members.iter().map(|m| m.client_urls.clone()).collect();
                listed == urls.iter().map(|u| vec![u.clone()]).collect::<Vec<_>>()
                    && a.leader.as_ref().map(|l| l.client_urls.clone()) == Some(vec![urls[leader].clone()])
            });
            if agreed {
                break;
            }
            assert!(Instant::now() < deadline, "the members never agreed: {answers:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A follower ends the stream, "not leader", naming the leader.
        let follower = (leader + 1) % 3;
        let mut c = connect(urls[follower].clone()).await;
        let e = tso_error(&mut c, tso_request(9, 1)).await;
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(e.message().contains("not leader"), "{e:?}");
        assert!(e.message().contains(&urls[leader]), "the leader's URL in {e:?}");
    });

    // A PD-style client takes timestamps before and after a kill -9 of the
    // leader, rediscovering it through GetMembers by itself.
    let seeds = urls.clone();
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed_seen = std::sync::Arc::clone(&killed);
    let client = std::thread::spawn(move || {
        let rt = runtime();
        let mut seen: Vec<u64> = Vec::new();
        let mut after_kill = 0;
        let deadline = Instant::now() + Duration::from_secs(40);
        let leaders = rt.block_on(pd_style_client(&seeds, 9, deadline, |ts| {
            seen.push(ts);
            if killed_seen.load(std::sync::atomic::Ordering::SeqCst) {
                after_kill += 1;
            }
            // Enough after the kill to show the new leader serves.
            after_kill < 500
        }));
        (seen, leaders)
    });
    std::thread::sleep(Duration::from_millis(1500));
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    cluster.kill(leader);
    let new = cluster.wait_leader_other_than(leader, Duration::from_secs(20)).expect("a new leader");
    let (seen, leaders) = client.join().expect("the client");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "timestamps went backwards or repeated");
    assert!(seen.len() > 500, "the client stopped after {} timestamps (leaders {leaders:?})", seen.len());
    assert_eq!(leaders.first(), Some(&urls[leader]), "first served by the old leader");
    assert_eq!(leaders.last(), Some(&urls[new]), "then by the new one, found through GetMembers");
    drop(cluster);
}

#[test]
fn under_tls_the_door_speaks_https_and_wants_a_client_certificate() {
    let certs = TestCerts::create(5);
    let mut args: Vec<String> = certs.serve_args();
    args.extend(["--cluster-id".into(), "5".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_dir, server, pd) = pd_node(Runtime::Std, &args, Some(certs.transport()));
    let read = |f: &str| std::fs::read(certs.dir().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let ca = tonic::transport::Certificate::from_pem(read("ca.crt"));
    let url = format!("https://{pd}");
    let rt = runtime();
    rt.block_on(async {
        let with_cert = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .identity(tonic::transport::Identity::from_pem(read("client.root.crt"), read("client.root.key")));
        let channel = Channel::from_shared(url.clone())
            .unwrap()
            .tls_config(with_cert)
            .expect("TLS config")
            .connect()
            .await
            .expect("connect with a client certificate");
        let mut client = PdClient::new(channel);
        let members =
            client.get_members(GetMembersRequest { header: None }).await.expect("GetMembers").into_inner();
        assert_eq!(members.leader.expect("a leader").client_urls, vec![url.clone()], "https:// under TLS");
        let answers = tso_all(&mut client, vec![tso_request(5, 10)]).await.expect("Tso over TLS");
        assert_eq!(answers[0].count, 10);

        // Without a client certificate: no call gets through.
        let without = tonic::transport::ClientTlsConfig::new().ca_certificate(ca);
        let refused = async {
            let channel = Channel::from_shared(url.clone()).unwrap().tls_config(without)?.connect().await?;
            PdClient::new(channel).get_members(GetMembersRequest { header: None }).await.map_err(Into::into)
        };
        let result: Result<_, Box<dyn std::error::Error>> = refused.await;
        assert!(result.is_err(), "a client without a certificate was served");
    });
    server.stop();
}

#[test]
fn a_stream_of_maximal_counts_waits_out_the_exhausted_clock_instead_of_failing() {
    // A small ahead bound: requests of more than 1,024 are refused by the
    // share rule once physical is 500 ms past the wall clock, so 1,500
    // requests of a whole millisecond each (1.5 s of physical time) must
    // wait for the wall clock on the way (D3), and all be answered.
    let (_dir, server, pd) =
        pd_node(Runtime::Std, &["--save-interval-ms", "500", "--max-ahead-ms", "1000"], None);
    let rt = runtime();
    rt.block_on(async {
        let mut client = connect(format!("http://{pd}")).await;
        let max = (1u32 << 18) - 1;
        let started = Instant::now();
        let answers = tso_all(&mut client, (0..1500).map(|_| tso_request(1, max)).collect())
            .await
            .expect("every request answered, none refused");
        assert_eq!(answers.len(), 1500);
        let mut last = 0;
        for a in &answers {
            assert_eq!(a.count, max);
            let end = packed(a);
            assert!(end - u64::from(max) + 1 > last, "ranges overlap");
            last = end;
        }
        // They could not all fit the ahead bound at once: some waited.
        assert!(started.elapsed() > Duration::from_millis(500), "nothing waited: {:?}", started.elapsed());
    });
    server.stop();
}
