//! Whether a cluster's nodes could pull an image, asked of the image's registry as a node would
//! ask it (the OCI Distribution API: `HEAD /v2/<name>/manifests/<reference>`, with the anonymous
//! bearer token a registry hands out when it asks for one).
//!
//! Only a registry's own "no such manifest" refuses an image. A registry out of this machine's
//! reach, or one that wants a login (the cluster may hold pull secrets this machine has not),
//! cannot tell, and the job goes on: the pod then shows why it waits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An image reference taken apart: `registry/name:tag` or `registry/name@digest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry's host (and port) as the reference names it (`docker.io` for none).
    pub registry: String,
    /// The repository (`library/python` for Docker Hub's official `python`).
    pub name: String,
    /// The tag or digest (`latest` for none).
    pub reference: String,
}

impl ImageRef {
    /// Takes `image` apart as Docker does: the first part is a registry when it has a `.` or a
    /// `:`, or is `localhost`; without one the image is Docker Hub's.
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        let bad = || format!("`{image}` is not an image reference");
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (image, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), rest.to_string()),
        };
        // A tag is after the last `:` of the last path part (a port is in the registry).
        let (name, tag) = match path.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n.to_string(), Some(t.to_string())),
            _ => (path, None),
        };
        let name = if registry == "docker.io" && !name.contains('/') {
            format!("library/{name}")
        } else {
            name
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        };
        if !ok(&name) {
            return Err(bad());
        }
        let reference = match (digest, tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t,
            (None, None) => "latest".to_string(),
        };
        if reference.is_empty() || reference.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(ImageRef {
            registry,
            name,
            reference,
        })
    }

    /// The registry's API address: Docker Hub's is `registry-1.docker.io`; one on loopback is
    /// spoken to over plain HTTP, as Docker and the kubelet's runtimes do.
    fn base(&self) -> String {
        let host = match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let loopback = bare == "localhost"
            || bare == "[::1]"
            || bare
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{host}")
    }
}

/// What a registry said of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pullable {
    Yes,
    /// The registry has no such image: why, in words.
    No(String),
    /// It could not tell (out of reach, a login needed): why, in words.
    Unknown(String),
}

/// Asks registries about images, remembering each answer for a while.
pub struct Registries {
    http: reqwest::Client,
    seen: Mutex<HashMap<String, (Instant, Pullable)>>,
}

/// How long an answer counts.
const REMEMBER: Duration = Duration::from_secs(300);

impl Registries {
    pub fn new() -> Registries {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Registries {
            http,
            seen: Mutex::default(),
        }
    }

    /// Whether `image` can be pulled, as far as its registry says.
    pub async fn check(&self, image: &str) -> Pullable {
        if let Some((at, p)) = self.seen.lock().unwrap().get(image)
            && at.elapsed() < REMEMBER
        {
            return p.clone();
        }
        let answer = match ImageRef::parse(image) {
            Ok(r) => self.ask(&r).await,
            Err(e) => Pullable::No(e),
        };
        self.seen
            .lock()
            .unwrap()
            .insert(image.to_string(), (Instant::now(), answer.clone()));
        answer
    }

    async fn ask(&self, r: &ImageRef) -> Pullable {
        let url = format!("{}/v2/{}/manifests/{}", r.base(), r.name, r.reference);
        let head = |token: Option<String>| {
            let mut req = self.http.head(&url).header(
                reqwest::header::ACCEPT,
                "application/vnd.oci.image.index.v1+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json, \
                 application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json",
            );
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let unknown = |e: reqwest::Error| {
            Pullable::Unknown(format!("the registry {} did not answer: {e}", r.registry))
        };
        let mut answer = match head(None).await {
            Ok(a) => a,
            Err(e) => return unknown(e),
        };
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = answer
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match self.anonymous_token(&challenge, r).await {
                Some(token) => match head(Some(token)).await {
                    Ok(a) => answer = a,
                    Err(e) => return unknown(e),
                },
                None => {
                    return Pullable::Unknown(format!(
                        "the registry {} wants a login to show {}",
                        r.registry, r.name
                    ));
                }
            }
        }
        let status = answer.status();
        if status.is_success() {
            Pullable::Yes
        } else if status == reqwest::StatusCode::NOT_FOUND {
            Pullable::No(format!(
                "the registry {} has no {}:{}",
                r.registry, r.name, r.reference
            ))
        } else {
            Pullable::Unknown(format!(
                "the registry {} answered {status} for {}",
                r.registry, r.name
            ))
        }
    }

    /// The token a registry's `Bearer` challenge hands out to anyone (to pull a public image).
    async fn anonymous_token(&self, challenge: &str, r: &ImageRef) -> Option<String> {
        let challenges = http_auth::parse_challenges(challenge).ok()?;
        let bearer = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))?;
        let param = |k: &str| {
            bearer
                .params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.to_unescaped())
        };
        let realm = param("realm")?;
        let mut query = vec![(
            "scope",
            param("scope").unwrap_or_else(|| format!("repository:{}:pull", r.name)),
        )];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer = self.http.get(&realm).query(&query).send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let t: Token = answer.json().await.ok()?;
        t.token.or(t.access_token)
    }
}

impl Default for Registries {
    fn default() -> Self {
        Registries::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_taken_apart_as_docker_does() {
        let r = |s: &str| ImageRef::parse(s).unwrap();
        assert_eq!(
            r("python:3.11-slim"),
            ImageRef {
                registry: "docker.io".into(),
                name: "library/python".into(),
                reference: "3.11-slim".into()
            }
        );
        assert_eq!(r("busybox").reference, "latest");
        assert_eq!(r("ada/train").name, "ada/train");
        let local = r("127.0.0.1:5000/petri/python:3.11");
        assert_eq!(
            (local.registry.as_str(), local.name.as_str()),
            ("127.0.0.1:5000", "petri/python")
        );
        assert_eq!(local.base(), "http://127.0.0.1:5000");
        assert_eq!(r("ghcr.io/org/img@sha256:abc").reference, "sha256:abc");
        assert_eq!(r("ghcr.io/org/img").base(), "https://ghcr.io");
        assert_eq!(r("busybox").base(), "https://registry-1.docker.io");
        assert!(ImageRef::parse("Not An Image").is_err());
        assert!(ImageRef::parse("x:").is_err());
    }
}
