// Pods and AdmissionReview requests for the inject tests, shaped like what the API server sends.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "inject/sidecar_config.h"

namespace pgkeel::inject::fixtures {

inline constexpr const char* kTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount";

// A Deployment's pod after ServiceAccount admission: an app container with the token mount.
inline nlohmann::json realisticPod(const nlohmann::json& annotations) {
  using nlohmann::json;
  json pod = json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"generateName": "shop-7d9f8b6c5d-", "namespace": "shop",
                 "labels": {"app": "shop", "pod-template-hash": "7d9f8b6c5d"}},
    "spec": {
      "serviceAccountName": "shop",
      "containers": [{
        "name": "app", "image": "registry.example/shop:1.4.2",
        "env": [{"name": "DATABASE_URL", "value": "postgres://app@127.0.0.1:6432/shop"}],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [
          {"name": "config", "mountPath": "/etc/shop"},
          {"name": "kube-api-access-x7k2p", "readOnly": true,
           "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
      }],
      "volumes": [
        {"name": "config", "configMap": {"name": "shop"}},
        {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
          {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
          {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
          {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
      "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
      "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"
    }
  })");
  if (!annotations.is_null()) pod["metadata"]["annotations"] = annotations;
  return pod;
}

inline nlohmann::json reviewFor(const nlohmann::json& object, const std::string& kind = "Pod",
                                const std::string& operation = "CREATE") {
  return {{"apiVersion", "admission.k8s.io/v1"},
          {"kind", "AdmissionReview"},
          {"request",
           {{"uid", "705ab4f5-6393-11e8-b7cc-42010a800002"},
            {"kind", {{"group", ""}, {"version", "v1"}, {"kind", kind}}},
            {"resource", {{"group", ""}, {"version", "v1"}, {"resource", "pods"}}},
            {"namespace", "shop"},
            {"operation", operation},
            {"userInfo", {{"username", "system:serviceaccount:kube-system:replicaset-controller"}}},
            {"object", object},
            {"dryRun", false}}}};
}

inline nlohmann::json cnpgAnnotations() {
  return {{"pgkeel.io/inject", "true"}, {"pgkeel.io/cnpg-cluster", "pg-main"}};
}

inline SidecarConfig testConfig(FailurePolicy policy = FailurePolicy::Ignore) {
  SidecarConfig config;
  config.image = "ghcr.io/pgkeel/pgkeel:0.1.0";
  config.failurePolicy = policy;
  return config;
}

}  // namespace pgkeel::inject::fixtures
