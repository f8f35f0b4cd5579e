//! The multi-instance topology as shipped: docker-compose.yml parses and says what the README
//! says (no Docker engine runs here; `instances.rs` runs the same topology without one).

use yaml_rust2::{Yaml, YamlLoader};

fn load(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_compose_file_runs_postgres_two_instances_a_load_balancer_and_a_mail_catcher() {
    let docs = YamlLoader::load_from_str(&load("docker-compose.yml")).expect("valid YAML");
    let services = &docs[0]["services"];
    assert!(
        services["postgres"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:16")
    );
    let instance = &services["tokenledger"];
    assert_eq!(instance["build"].as_str(), Some("."));
    assert_eq!(instance["deploy"]["replicas"].as_i64(), Some(2));
    let env = &instance["environment"];
    assert!(
        env["DATABASE_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    for secret in [
        "JWT_SECRET",
        "REFRESH_JWT_SECRET",
        "ADMIN_API_TOKEN",
        "LEDGER_KEY",
        "CHECKPOINT_KEY",
        "PERSONAL_DATA_KEY",
    ] {
        assert_eq!(
            env[secret].as_str(),
            Some(format!("${{{secret}}}").as_str()),
            "{secret} comes from .env"
        );
    }
    assert_eq!(
        instance["stop_grace_period"].as_str(),
        Some("60s"),
        "a graceful stop has the time to store its snapshot"
    );
    assert_eq!(
        instance["healthcheck"]["test"],
        YamlLoader::load_from_str(r#"["CMD", "tokenledger", "probe"]"#).unwrap()[0],
        "healthy once ready, asked by the binary (the image has no curl)"
    );
    // The emails go to the mail catcher, whose inbox is published (README, Emails).
    assert!(
        services["mailpit"]["image"]
            .as_str()
            .unwrap()
            .starts_with("axllent/mailpit")
    );
    assert_eq!(
        services["mailpit"]["ports"][0],
        Yaml::String("8025:8025".into())
    );
    assert_eq!(env["SMTP_HOST"].as_str(), Some("mailpit"));
    assert_eq!(env["SMTP_PORT"].as_str(), Some("1025"));
    assert_eq!(env["SMTP_SECURITY"].as_str(), Some("none"));
    let balancer = &services["loadbalancer"];
    assert_eq!(
        balancer["depends_on"]["tokenledger"]["condition"].as_str(),
        Some("service_healthy"),
        "the balancer starts once the instances are ready"
    );
    assert!(balancer["image"].as_str().unwrap().starts_with("nginx"));
    assert_eq!(balancer["ports"][0], Yaml::String("1337:1337".into()));
    let nginx = load("deploy/nginx.conf");
    assert!(nginx.contains("proxy_pass http://tokenledger;") && nginx.contains("X-Forwarded-For"));
    let example = load(".env.example");
    for secret in [
        "POSTGRES_PASSWORD",
        "JWT_SECRET",
        "REFRESH_JWT_SECRET",
        "ADMIN_API_TOKEN",
        "LEDGER_KEY",
        "CHECKPOINT_KEY",
        "PERSONAL_DATA_KEY",
    ] {
        assert!(
            example.contains(&format!("{secret}=")),
            "{secret} missing in .env.example"
        );
    }
    let dockerfile = load("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(
        dockerfile.contains(r#"HEALTHCHECK"#)
            && dockerfile.contains(r#"CMD ["tokenledger", "probe"]"#)
    );
}
