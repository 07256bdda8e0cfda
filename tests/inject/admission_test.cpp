// Tests for admission: the patch on a realistic pod, pods left alone, bad annotations, bad bodies.
#include "inject/admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "test_pods.h"

namespace pgkeel::inject {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace fixtures;

std::string unbase64(const std::string& text) {
  std::string out(text.size(), '\0');
  int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(text.data()),
                               static_cast<int>(text.size()));
  EXPECT_GE(length, 0) << text;
  size_t padding = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
  out.resize(static_cast<size_t>(std::max(length, 0)) - padding);
  return out;
}

json responseOf(const json& pod, const SidecarConfig& config = testConfig()) {
  AdmissionOutcome outcome = admit(reviewFor(pod).dump(), config);
  EXPECT_EQ(outcome.httpStatus, 200) << outcome.body.dump();
  return outcome.body.value("response", json::object());
}

// The pod after the webhook's patch (the pod itself when there is none).
json patched(const json& pod, const SidecarConfig& config = testConfig()) {
  json response = responseOf(pod, config);
  if (!response.contains("patch")) return pod;
  EXPECT_EQ(response["patchType"], "JSONPatch");
  return pod.patch(json::parse(unbase64(response["patch"])));
}

std::vector<json> containersNamed(const json& pod, const std::string& name) {
  std::vector<json> found;
  for (const char* list : {"containers", "initContainers"}) {
    for (const json& c : pod["spec"].value(list, json::array())) {
      if (c["name"] == name) found.push_back(c);
    }
  }
  return found;
}

// The value following flag in args, or "" when the flag is absent.
std::string argAfter(const json& args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) return args[i + 1];
  }
  return "";
}

// An annotated pod gets exactly the container of the spec at initContainers[0], and the status.
TEST(InjectAdmission, AnnotatedPodGetsTheSidecar) {
  json pod = realisticPod(cnpgAnnotations());
  json after = patched(pod);
  ASSERT_EQ(containersNamed(after, "pgkeel").size(), 1u) << after.dump(2);
  const json& sidecar = after["spec"]["initContainers"][0];
  EXPECT_EQ(sidecar["name"], "pgkeel");
  EXPECT_EQ(sidecar["image"], "ghcr.io/pgkeel/pgkeel:0.1.0");
  EXPECT_EQ(sidecar["imagePullPolicy"], "IfNotPresent");
  EXPECT_EQ(sidecar["restartPolicy"], "Always");
  EXPECT_EQ(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(sidecar["readinessProbe"]["httpGet"]["port"], 9432);
  EXPECT_EQ(sidecar["startupProbe"]["httpGet"]["path"], "/healthz");
  EXPECT_EQ(sidecar["livenessProbe"]["failureThreshold"], 3);
  EXPECT_EQ(sidecar["ports"], json::parse(R"([{"name":"pgkeel-admin","containerPort":9432,
                                               "protocol":"TCP"}])"));
  EXPECT_EQ(
      sidecar["lifecycle"]["preStop"]["exec"]["command"],
      json({"/usr/local/bin/pgkeel", "drain", "--admin", "127.0.0.1:9432", "--timeout", "25s"}));
  EXPECT_EQ(sidecar["args"],
            json({"--listen-primary", "127.0.0.1:6432", "--listen-replica", "127.0.0.1:6433",
                  "--admin-listen", "0.0.0.0:9432", "--source", "cnpg", "--kubernetes-cluster",
                  "pg-main", "--kubernetes-namespace", "shop"}));
  EXPECT_EQ(sidecar["volumeMounts"],
            json::array({pod["spec"]["containers"][0]["volumeMounts"][1]}));
  EXPECT_EQ(sidecar["securityContext"], defaultSecurityContext());
  EXPECT_EQ(sidecar["resources"], defaultResources());
  EXPECT_EQ(after["metadata"]["annotations"]["pgkeel.io/status"], "injected");
  EXPECT_EQ(after["spec"]["containers"], pod["spec"]["containers"]);
}

// The answer echoes the review's apiVersion and kind and the request's uid.
TEST(InjectAdmission, EchoesUidAndKind) {
  AdmissionOutcome outcome = admit(reviewFor(realisticPod(cnpgAnnotations())).dump(), testConfig());
  EXPECT_EQ(outcome.body["apiVersion"], "admission.k8s.io/v1");
  EXPECT_EQ(outcome.body["kind"], "AdmissionReview");
  EXPECT_EQ(outcome.body["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
  EXPECT_EQ(outcome.body["response"]["allowed"], true);
  EXPECT_EQ(outcome.severity, Severity::Info);
  EXPECT_THAT(outcome.logLine, HasSubstr("shop/shop-7d9f8b6c5d-*"));
}

// Admitting the patched pod again (reinvocation) changes nothing: still exactly one sidecar.
TEST(InjectAdmission, PatchedPodGetsNoSecondPatch) {
  json once = patched(realisticPod(cnpgAnnotations()));
  json response = responseOf(once);
  EXPECT_EQ(response["allowed"], true);
  EXPECT_FALSE(response.contains("patch"));
  EXPECT_EQ(containersNamed(patched(once), "pgkeel").size(), 1u);
}

// A pod with init containers gets the sidecar in front of them (/spec/initContainers/0).
TEST(InjectAdmission, SidecarGoesBeforeExistingInitContainers) {
  json pod = realisticPod(cnpgAnnotations());
  pod["spec"]["initContainers"] = {{{"name", "migrate"}, {"image", "registry.example/migrate:1"}}};
  json ops = json::parse(unbase64(responseOf(pod)["patch"]));
  EXPECT_EQ(ops[0]["path"], "/spec/initContainers/0");
  EXPECT_EQ(ops[1]["path"], "/metadata/annotations/pgkeel.io~1status");
  json after = pod.patch(ops);
  ASSERT_EQ(after["spec"]["initContainers"].size(), 2u);
  EXPECT_EQ(after["spec"]["initContainers"][0]["name"], "pgkeel");
  EXPECT_EQ(after["spec"]["initContainers"][1]["name"], "migrate");
}

// Pods that do not ask for pgkeel, or ask with another value than "true", pass untouched.
TEST(InjectAdmission, PodsNotAskingPassUntouched) {
  for (json annotations : {json(), json::object(), json{{"pgkeel.io/inject", "false"}},
                           json{{"pgkeel.io/inject", "True"}, {"pgkeel.io/cnpg-cluster", "x"}},
                           json{{"pgkeel.io/cnpg-cluster", "pg-main"}}}) {
    json response = responseOf(realisticPod(annotations));
    EXPECT_EQ(response["allowed"], true) << annotations;
    EXPECT_FALSE(response.contains("patch")) << annotations;
    EXPECT_FALSE(response.contains("warnings")) << annotations;
  }
}

// A pod that already has a pgkeel container, init container or the status gets no patch.
TEST(InjectAdmission, PodWithSidecarPassesUntouched) {
  json withContainer = realisticPod(cnpgAnnotations());
  withContainer["spec"]["containers"].push_back({{"name", "pgkeel"}, {"image", "x"}});
  json withInit = realisticPod(cnpgAnnotations());
  withInit["spec"]["initContainers"] = {{{"name", "pgkeel"}, {"image", "x"}}};
  json annotations = cnpgAnnotations();
  annotations["pgkeel.io/status"] = "injected";
  for (const json& pod : {withContainer, withInit, realisticPod(annotations)}) {
    json response = responseOf(pod, testConfig(FailurePolicy::Fail));
    EXPECT_EQ(response["allowed"], true);
    EXPECT_FALSE(response.contains("patch"));
  }
}

// Other kinds and other operations than CREATE are allowed without a patch.
TEST(InjectAdmission, OtherKindsAndOperationsPass) {
  json pod = realisticPod(cnpgAnnotations());
  for (json review : {reviewFor(pod, "Deployment"), reviewFor(pod, "Pod", "UPDATE"),
                      reviewFor(pod, "Pod", "DELETE")}) {
    AdmissionOutcome outcome = admit(review.dump(), testConfig());
    EXPECT_EQ(outcome.httpStatus, 200);
    EXPECT_EQ(outcome.body["response"]["allowed"], true);
    EXPECT_FALSE(outcome.body["response"].contains("patch"));
  }
}

struct BadCase {
  json annotations;
  std::string expected;  // in the message
};

std::vector<BadCase> badCases() {
  return {
      {{{"pgkeel.io/inject", "true"}}, "no source annotation"},
      {{{"pgkeel.io/inject", "true"},
        {"pgkeel.io/cnpg-cluster", "a"},
        {"pgkeel.io/candidates", "db:5432"}},
       "pgkeel.io/candidates and pgkeel.io/cnpg-cluster each name a source"},
      {{{"pgkeel.io/inject", "true"},
        {"pgkeel.io/cnpg-cluster", "a"},
        {"pgkeel.io/config.probe_intervall", "1s"}},
       "pgkeel.io/config.probe_intervall: unknown pgkeel key"},
      {{{"pgkeel.io/inject", "true"},
        {"pgkeel.io/cnpg-cluster", "a"},
        {"pgkeel.io/config.probe_interval", "5"}},
       "annotation pgkeel.io/config.probe_interval: needs a unit"},
      {{{"pgkeel.io/inject", "true"}, {"pgkeel.io/candidates", "db:99999"}},
       "annotation pgkeel.io/candidates:"},
      {{{"pgkeel.io/inject", "true"}, {"pgkeel.io/cnpg-cluster", "Not_A_Name"}},
       "annotation pgkeel.io/cnpg-cluster: 'Not_A_Name' is not a Kubernetes object name"},
      {{{"pgkeel.io/inject", "true"}, {"pgkeel.io/cnpg-clustr", "a"}},
       "pgkeel.io/cnpg-clustr is not one pgkeel knows (did you mean pgkeel.io/cnpg-cluster?)"},
      {{{"pgkeel.io/inject", "true"},
        {"pgkeel.io/candidates", "db:5432"},
        {"pgkeel.io/cluster-namespace", "db"}},
       "annotation pgkeel.io/cluster-namespace: only goes with"},
      {{{"pgkeel.io/inject", "true"},
        {"pgkeel.io/cnpg-cluster", "a"},
        {"pgkeel.io/config.admin_listen", "0.0.0.0:1"}},
       "pgkeel.io/config.admin_listen: is set by the webhook"},
  };
}

// With failurePolicy Fail, bad annotations refuse the pod: code 400, the annotation named.
TEST(InjectAdmission, BadAnnotationsRefuseWithFail) {
  for (const BadCase& bad : badCases()) {
    AdmissionOutcome outcome =
        admit(reviewFor(realisticPod(bad.annotations)).dump(), testConfig(FailurePolicy::Fail));
    const json& response = outcome.body["response"];
    EXPECT_EQ(outcome.httpStatus, 200);
    EXPECT_EQ(response["allowed"], false) << bad.annotations;
    EXPECT_EQ(response["status"]["code"], 400);
    EXPECT_THAT(response["status"]["message"].get<std::string>(), HasSubstr(bad.expected));
    EXPECT_FALSE(response.contains("patch"));
    EXPECT_EQ(outcome.severity, Severity::Warning);
  }
}

// With failurePolicy Ignore, the same pods are admitted unchanged with the problem as a warning.
TEST(InjectAdmission, BadAnnotationsWarnWithIgnore) {
  for (const BadCase& bad : badCases()) {
    AdmissionOutcome outcome = admit(reviewFor(realisticPod(bad.annotations)).dump(), testConfig());
    const json& response = outcome.body["response"];
    EXPECT_EQ(response["allowed"], true) << bad.annotations;
    EXPECT_FALSE(response.contains("patch"));
    ASSERT_EQ(response.value("warnings", json::array()).size(), 1u) << bad.annotations;
    EXPECT_THAT(response["warnings"][0].get<std::string>(), HasSubstr(bad.expected));
    EXPECT_EQ(outcome.severity, Severity::Warning);
    EXPECT_THAT(outcome.logLine, HasSubstr(bad.expected));
  }
}

// The composed args go through pgkeel's own check: a combination it refuses refuses the pod.
// The sidecar config's Kubernetes-only keys are left out for a static or patroni pod, so a chart
// default of probe_from_secret cannot refuse those; the pod's own annotation still can.
TEST(InjectAdmission, ComposedArgsAreChecked) {
  SidecarConfig config = testConfig(FailurePolicy::Fail);
  config.config = {{"probe_from_secret", "true"}, {"secret_user", "app"}};
  json staticPod = {{"pgkeel.io/inject", "true"}, {"pgkeel.io/candidates", "db:5432"}};
  json args = patched(realisticPod(staticPod), config)["spec"]["initContainers"][0]["args"];
  EXPECT_THAT(args.dump(), Not(HasSubstr("--probe-from-secret")));
  EXPECT_THAT(args.dump(), Not(HasSubstr("--secret-user")));
  json asked = staticPod;
  asked["pgkeel.io/config.probe_from_secret"] = "true";
  json response = responseOf(realisticPod(asked), config);
  EXPECT_EQ(response["allowed"], false);
  EXPECT_THAT(response["status"]["message"].get<std::string>(),
              HasSubstr("probe_from_secret needs source cnpg or zalando"));
  json cnpgArgs =
      patched(realisticPod(cnpgAnnotations()), config)["spec"]["initContainers"][0]["args"];
  EXPECT_THAT(cnpgArgs.dump(), HasSubstr(R"("--probe-from-secret","true")"));
}

// A cnpg pod without a service-account token mount gets its sidecar and a warning saying why it
// will not become ready; the token mount that is copied keeps only its known scalar fields.
TEST(InjectAdmission, TokenMountIsTypedAndItsAbsenceWarned) {
  json pod = realisticPod(cnpgAnnotations());
  json& mounts = pod["spec"]["containers"][0]["volumeMounts"];
  for (json& mount : mounts) {
    if (mount["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
      mount["extra"] = {{"a", 1}};
  }
  json sidecar = patched(pod)["spec"]["initContainers"][0];
  ASSERT_EQ(sidecar["volumeMounts"].size(), 1u);
  EXPECT_FALSE(sidecar["volumeMounts"][0].contains("extra"));
  EXPECT_EQ(sidecar["volumeMounts"][0]["mountPath"],
            "/var/run/secrets/kubernetes.io/serviceaccount");
  for (json& container : pod["spec"]["containers"]) container.erase("volumeMounts");
  json response = responseOf(pod);
  EXPECT_EQ(response["allowed"], true);
  EXPECT_TRUE(response.contains("patch"));
  ASSERT_TRUE(response.contains("warnings"));
  EXPECT_THAT(response["warnings"][0].get<std::string>(), HasSubstr("service-account token"));
}

// Args: listeners, the config file's keys, the source, then the pod's own keys (later wins).
TEST(InjectAdmission, ArgsOrderAndSources) {
  SidecarConfig config = testConfig();
  config.config = {{"probe_interval", "1s"}, {"log_format", "json"}};
  config.listenAddress = "::1";
  json annotations = {{"pgkeel.io/inject", "true"},
                      {"pgkeel.io/zalando-cluster", "acid-main"},
                      {"pgkeel.io/cluster-namespace", "db"},
                      {"pgkeel.io/config.probe_interval", "500ms"}};
  json args = patched(realisticPod(annotations), config)["spec"]["initContainers"][0]["args"];
  EXPECT_EQ(args, json({"--listen-primary", "[::1]:6432", "--listen-replica", "[::1]:6433",
                        "--admin-listen", "0.0.0.0:9432", "--probe-interval", "1s", "--log-format",
                        "json", "--source", "zalando", "--kubernetes-cluster", "acid-main",
                        "--kubernetes-namespace", "db", "--probe-interval", "500ms"}));
  json patroni = {{"pgkeel.io/inject", "true"},
                  {"pgkeel.io/patroni-urls", "http://pg-0:8008,http://pg-1:8008"}};
  args = patched(realisticPod(patroni))["spec"]["initContainers"][0]["args"];
  EXPECT_EQ(argAfter(args, "--source"), "patroni");
  EXPECT_EQ(argAfter(args, "--patroni-urls"), "http://pg-0:8008,http://pg-1:8008");
  EXPECT_EQ(argAfter(args, "--kubernetes-namespace"), "");
}

// A pod without a token mount (automountServiceAccountToken: false) gets a sidecar without one.
TEST(InjectAdmission, NoTokenMountNoVolumeMounts) {
  json pod = realisticPod({{"pgkeel.io/inject", "true"}, {"pgkeel.io/candidates", "db:5432"}});
  pod["spec"]["containers"][0].erase("volumeMounts");
  json sidecar = patched(pod)["spec"]["initContainers"][0];
  EXPECT_FALSE(sidecar.contains("volumeMounts"));
  EXPECT_EQ(argAfter(sidecar["args"], "--candidates"), "db:5432");
}

// Bodies that are not AdmissionReviews get 400 with an explanation, with allowed=false and the
// uid when one can be read.
TEST(InjectAdmission, MalformedBodiesGet400) {
  json pod = realisticPod(cnpgAnnotations());
  json noUid = reviewFor(pod);
  noUid["request"].erase("uid");
  json noObject = reviewFor(pod);
  noObject["request"].erase("object");
  json badAnnotation = reviewFor(realisticPod({{"pgkeel.io/inject", true}}));
  json v1beta1 = reviewFor(pod);
  v1beta1["apiVersion"] = "admission.k8s.io/v1beta1";
  struct Case {
    std::string body, expected;
    bool hasUid;
  };
  for (const Case& c : std::vector<Case>{
           {"not json {", "not JSON", false},
           {"[1,2]", "not a JSON object", false},
           {R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})", "no request",
            false},
           {noUid.dump(), "request.uid", false},
           {noObject.dump(), "request.object", true},
           {badAnnotation.dump(), "pgkeel.io/inject is not a string", true},
           {v1beta1.dump(), "apiVersion", true},
           {std::string(100000, '[') + std::string(100000, ']'), "nests deeper", false},
           {"", "not JSON", false}}) {
    AdmissionOutcome outcome = admit(c.body, testConfig());
    EXPECT_EQ(outcome.httpStatus, 400) << c.body;
    EXPECT_THAT(outcome.body.dump(), HasSubstr(c.expected)) << c.body;
    if (c.hasUid) {
      EXPECT_EQ(outcome.body["response"]["allowed"], false);
      EXPECT_EQ(outcome.body["response"]["status"]["code"], 400);
      EXPECT_EQ(outcome.body["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    } else {
      EXPECT_EQ(outcome.body["kind"], "Status");
      EXPECT_EQ(outcome.body["code"], 400);
    }
  }
}

// base64 is RFC 4648 with padding and no line breaks, also past 64 bytes.
TEST(InjectAdmission, Base64) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  std::string longText(100, 'x');
  EXPECT_EQ(base64(longText).find('\n'), std::string::npos);
  EXPECT_EQ(unbase64(base64(longText)), longText);
}

}  // namespace
}  // namespace pgkeel::inject
