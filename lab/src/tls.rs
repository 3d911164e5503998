//! TLS material for a lab whose topology says `tls = true`: one CA, and for every host a certificate and key
//! signed by it, written to `{run}/tls` (the `{tls}` placeholder in services):
//!
//! - `ca.crt`: the CA certificate, for `--cacert`, `tls-ca-cert-file`, HAProxy's `ca-file`;
//! - `HOST.crt`, `HOST.key`: the host's certificate and key; `HOST.pem`: both in one file (HAProxy's `crt`).
//!
//! Each host certificate names the host (its name, hostname and aliases as DNS names), every address it has, every
//! shared address of the topology (`[names]`, such as the VIP, which any host may hold) and 127.0.0.1, since clients
//! that check names (rustls does; redis-cli does not) dial addresses. Each serves as server and client certificate
//! (Redis asks clients for one, and replicas and Sentinels are clients of each other). ECDSA P-256, valid for 30
//! days from the lab's start: the material lives and dies with the lab.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::topology::Topology;

fn failed(what: &str, e: rcgen::Error) -> io::Error {
    io::Error::other(format!("TLS material: {what}: {e}"))
}

fn validity(params: &mut CertificateParams) {
    let now = std::time::SystemTime::now();
    // An hour of slack for clocks that differ between the writer and a reader.
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(30 * 24 * 3600)).into();
}

/// The CA and every host's certificate and key, as files: made once per lab (on the coordinator, for a lab
/// spread over machines, so that every machine trusts one CA).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Material {
    pub files: Vec<MaterialFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaterialFile {
    /// A plain file name: `ca.crt`, `HOST.crt`, `HOST.key`, `HOST.pem`.
    pub name: String,
    pub content: String,
    pub mode: u32,
}

impl Material {
    fn add(&mut self, name: String, content: String, mode: u32) {
        self.files.push(MaterialFile { name, content, mode });
    }

    /// Writes the files into `dir` (created). A name that is not a plain file name (it may come from another
    /// machine) is refused before anything is written.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        for file in &self.files {
            let plain = !file.name.is_empty()
                && !file.name.starts_with('.')
                && file
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !plain || file.mode & !0o777 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("TLS material: refusing the file `{}` (mode {:o})", file.name, file.mode),
                ));
            }
        }
        std::fs::create_dir_all(dir)?;
        for file in &self.files {
            write(&dir.join(&file.name), file.content.as_bytes(), file.mode)?;
        }
        Ok(())
    }
}

/// Writes the CA and every host's certificate into `dir` (created; keys readable by the owner only).
pub fn write_material(topology: &Topology, dir: &Path) -> io::Result<()> {
    material(topology)?.write(dir)
}

/// Makes the CA and every host's certificate.
pub fn material(topology: &Topology) -> io::Result<Material> {
    let mut material = Material::default();
    let ca_key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, format!("lab {} CA", topology.name));
    validity(&mut ca);
    let ca_certificate = ca.self_signed(&ca_key).map_err(|e| failed("CA certificate", e))?;
    material.add("ca.crt".into(), ca_certificate.pem(), 0o644);
    let issuer = Issuer::new(ca, ca_key);

    let shared: Vec<Ipv4Addr> = topology.names.values().copied().collect();
    for host in &topology.hosts {
        let mut names: Vec<String> = vec![host.name.clone(), host.hostname.clone()];
        names.extend(host.aliases.iter().cloned());
        names.sort();
        names.dedup();
        let mut params = CertificateParams::new(names).map_err(|e| failed(&host.name, e))?;
        let mut addresses: Vec<Ipv4Addr> = host.interfaces.iter().map(|i| i.address).collect();
        addresses.extend(&shared);
        addresses.push(Ipv4Addr::LOCALHOST);
        for address in addresses {
            params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(address)));
        }
        params.distinguished_name.push(DnType::CommonName, host.name.clone());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params);
        let key = KeyPair::generate().map_err(|e| failed(&host.name, e))?;
        let certificate = params.signed_by(&key, &issuer).map_err(|e| failed(&host.name, e))?;
        let (certificate, key) = (certificate.pem(), key.serialize_pem());
        material.add(format!("{}.pem", host.name), format!("{certificate}{key}"), 0o600);
        material.add(format!("{}.crt", host.name), certificate, 0o644);
        material.add(format!("{}.key", host.name), key, 0o600);
    }
    Ok(material)
}

fn write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)
}
