//! `leasetso cert`: a cluster's certificates in a few commands, into one
//! directory that `serve` and every client command take (`--certs-dir`).
//!
//! * `create-ca --cluster-id N` writes `ca.crt` and `ca.key`: the cluster's
//!   authority. Its certificate names the cluster (a URI SAN
//!   `leasetso://cluster/N`), so the later commands read the cluster id from it.
//! * `create-node --id N --host H[,H...]` writes `node.N.crt` and `node.N.key`,
//!   signed by the CA: SANs for every host (a DNS name or an IP address) and
//!   the URI `leasetso://cluster/C/node/N`, the identity a peer is checked
//!   against. Valid for both ends of a TLS connection (nodes dial each other).
//! * `create-client --name NAME [--admin]` writes `client.NAME.crt` and
//!   `client.NAME.key`: the URI `leasetso://cluster/C/client/NAME`, or
//!   `leasetso://cluster/C/admin/NAME` for the admin role.
//!
//! Nothing is ever overwritten: a command that would replace a file fails
//! before writing anything. Keys are written with mode 0600 (readable by
//! their owner only), created that way rather than changed afterwards.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The URI scheme and authority of every identity in a leasetso certificate.
pub(crate) const URI_PREFIX: &str = "leasetso://cluster/";

/// What a certificate command failed on, with the path or value involved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    /// A file the command would write exists already.
    #[error("{0} exists already: leasetso cert never overwrites a file (move it away to replace it)")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The CA files could not be used.
    #[error("{path} is not a leasetso CA certificate: {why}")]
    BadCa { path: PathBuf, why: String },
    /// A value on the command line.
    #[error("{0}")]
    Invalid(String),
    /// The certificate library refused.
    #[error("cannot make the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.to_owned(), source }
}

/// How long certificates last, from now.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks a few minutes apart.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// `create-ca`: the cluster's authority.
pub(crate) fn create_ca(dir: &Path, cluster_id: u64, days: u32) -> Result<Vec<PathBuf>, CertError> {
    if cluster_id == 0 {
        return Err(CertError::Invalid(
            "--cluster-id must not be 0 (clients use 0 for \"any cluster\")".into(),
        ));
    }
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    refuse_existing(&[&crt, &key])?;
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.distinguished_name = name(&format!("leasetso CA, cluster {cluster_id}"));
    params.subject_alt_names = vec![uri(&format!("{URI_PREFIX}{cluster_id}"))?];
    validity(&mut params, days);
    let key_pair = KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    write_pair(dir, &crt, &cert.pem(), &key, &key_pair.serialize_pem())?;
    Ok(vec![crt, key])
}

/// The CA of `dir`: its re-created certificate (same name and key, so what
/// it signs chains to the `ca.crt` on disk), its key, and the cluster id.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    cluster_id: u64,
}

fn load_ca(dir: &Path) -> Result<Ca, CertError> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let pem = fs::read_to_string(&crt).map_err(io(&crt))?;
    let key_pem = fs::read_to_string(&key).map_err(io(&key))?;
    let bad = |why: String| CertError::BadCa { path: crt.clone(), why };
    let params = CertificateParams::from_ca_cert_pem(&pem).map_err(|e| bad(e.to_string()))?;
    let cluster_id = params
        .subject_alt_names
        .iter()
        .find_map(|san| match san {
            SanType::URI(u) => u.as_str().strip_prefix(URI_PREFIX).and_then(|id| id.parse::<u64>().ok()),
            _ => None,
        })
        .ok_or_else(|| bad(format!("it names no cluster ({URI_PREFIX}N)")))?;
    let key_pair = KeyPair::from_pem(&key_pem)
        .map_err(|e| CertError::BadCa { path: key.clone(), why: e.to_string() })?;
    let cert = params.self_signed(&key_pair)?;
    Ok(Ca { cert, key: key_pair, cluster_id })
}

/// `create-node`: node `id`'s certificate, for the hosts it is reached at.
pub(crate) fn create_node(dir: &Path, id: u16, hosts: &str, days: u32) -> Result<Vec<PathBuf>, CertError> {
    if id == 0 {
        return Err(CertError::Invalid("--id is 1-based, as in `serve --id`".into()));
    }
    let (crt, key) = (dir.join(format!("node.{id}.crt")), dir.join(format!("node.{id}.key")));
    refuse_existing(&[&crt, &key])?;
    let ca = load_ca(dir)?;
    let mut sans = vec![uri(&format!("{URI_PREFIX}{}/node/{id}", ca.cluster_id))?];
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        sans.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(|_| {
                CertError::Invalid(format!("--host {host:?} is not a DNS name or an IP address"))
            })?),
        });
    }
    if sans.len() == 1 {
        return Err(CertError::Invalid(
            "--host names no host: give the names and addresses the node is reached at".into(),
        ));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("leasetso node {id}, cluster {}", ca.cluster_id));
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Nodes dial each other and accept each other: both roles.
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, days);
    let key_pair = KeyPair::generate()?;
    let cert = params.signed_by(&key_pair, &ca.cert, &ca.key)?;
    write_pair(dir, &crt, &cert.pem(), &key, &key_pair.serialize_pem())?;
    Ok(vec![crt, key])
}

/// `create-client`: a user's certificate, with the admin role if asked.
pub(crate) fn create_client(
    dir: &Path,
    user: &str,
    admin: bool,
    days: u32,
) -> Result<Vec<PathBuf>, CertError> {
    let valid = !user.is_empty()
        && user.len() <= 64
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(CertError::Invalid(format!(
            "--name {user:?}: a user name is 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    let (crt, key) = (dir.join(format!("client.{user}.crt")), dir.join(format!("client.{user}.key")));
    refuse_existing(&[&crt, &key])?;
    let ca = load_ca(dir)?;
    let role = if admin { "admin" } else { "client" };
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("leasetso {role} {user}, cluster {}", ca.cluster_id));
    params.subject_alt_names = vec![uri(&format!("{URI_PREFIX}{}/{role}/{user}", ca.cluster_id))?];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, days);
    let key_pair = KeyPair::generate()?;
    let cert = params.signed_by(&key_pair, &ca.cert, &ca.key)?;
    write_pair(dir, &crt, &cert.pem(), &key, &key_pair.serialize_pem())?;
    Ok(vec![crt, key])
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "leasetso");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn uri(s: &str) -> Result<SanType, CertError> {
    Ok(SanType::URI(s.try_into().map_err(|_| CertError::Invalid(format!("{s:?} is not a valid URI")))?))
}

fn refuse_existing(paths: &[&Path]) -> Result<(), CertError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CertError::Exists(p.to_path_buf())),
        None => Ok(()),
    }
}

/// Writes a certificate and its key, each created new (never replacing a
/// file, even one that appeared since the check), the key with mode 0600.
fn write_pair(dir: &Path, crt: &Path, crt_pem: &str, key: &Path, key_pem: &str) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    write_new(key, key_pem, 0o600)?;
    if let Err(e) = write_new(crt, crt_pem, 0o644) {
        // Not half a pair: the key alone is of no use.
        let _ = fs::remove_file(key);
        return Err(e);
    }
    Ok(())
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CertError::Exists(path.to_owned()),
        _ => CertError::Io { path: path.to_owned(), source: e },
    })?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(io(path))
}
