// Admission: an AdmissionReview (admission.k8s.io/v1) in, the answer with the sidecar's patch out.
#include "inject/admission.h"

#include <openssl/evp.h>

#include <vector>

#include "inject/pod_annotations.h"
#include "inject/sidecar_container.h"

namespace pgkeel::inject {
namespace {

using nlohmann::json;

constexpr const char* kApiVersion = "admission.k8s.io/v1";

// What to answer for a well-formed request.
struct Decision {
  bool allowed = true;
  json patch;           // a JSONPatch array, or null for none
  std::string problem;  // refused (allowed=false) or, when allowed, the warning
  std::string log;
  Severity severity = Severity::Debug;
};

// object[key] when object is an object that has key, else null; never copies.
const json& field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

Decision pass(std::string log) {
  return {true, nullptr, "", std::move(log), Severity::Debug};
}

std::string pointerEscape(std::string_view token) {
  std::string out;
  for (char c : token) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

json status400(const std::string& message) {
  return {{"code", 400}, {"reason", "BadRequest"}, {"message", message}};
}

json review(const std::string& uid, json response) {
  response["uid"] = uid;
  return {{"apiVersion", kApiVersion}, {"kind", "AdmissionReview"}, {"response", response}};
}

// An answer to a body that is not a usable AdmissionReview.
AdmissionOutcome malformed(const std::string& problem, const std::string& uid = "") {
  AdmissionOutcome outcome;
  outcome.httpStatus = 400;
  outcome.severity = Severity::Warning;
  outcome.logLine = "bad admission request: " + problem;
  if (!uid.empty()) {
    outcome.body = review(uid, {{"allowed", false}, {"status", status400(problem)}});
  } else {
    outcome.body = {{"apiVersion", "v1"}, {"kind", "Status"}, {"status", "Failure"}};
    outcome.body.update(status400(problem));
  }
  return outcome;
}

// The request's uid, or "" when there is none; problem says what is wrong with the envelope.
std::string readEnvelope(const json& root, std::string& problem) {
  if (!root.is_object()) {
    problem = "the body is not a JSON object";
    return "";
  }
  if (field(root, "kind") != "AdmissionReview") problem = "kind is not AdmissionReview";
  if (problem.empty() && field(root, "apiVersion") != kApiVersion)
    problem = std::string("apiVersion is not ") + kApiVersion;
  const json& request = field(root, "request");
  if (!request.is_object()) {
    if (problem.empty()) problem = "no request in the AdmissionReview";
    return "";
  }
  const json& uid = field(request, "uid");
  if (!uid.is_string() || uid.get<std::string>().empty()) {
    if (problem.empty()) problem = "request.uid is missing";
    return "";
  }
  return uid.get<std::string>();
}

// metadata.annotations as a map; problem when it is not an object of strings.
AnnotationMap readAnnotations(const json& metadata, std::string& problem) {
  AnnotationMap out;
  const json& annotations = field(metadata, "annotations");
  if (annotations.is_null()) return out;
  if (!annotations.is_object()) {
    problem = "metadata.annotations is not an object";
    return out;
  }
  for (const auto& [name, value] : annotations.items()) {
    if (value.is_string()) out[name] = value.get<std::string>();
    if (!value.is_string() && problem.empty()) problem = "annotation " + name + " is not a string";
  }
  return out;
}

bool hasSidecar(const json& spec, const AnnotationMap& annotations) {
  if (annotations.contains(std::string(kStatusAnnotation))) return true;
  for (const char* list : {"containers", "initContainers"}) {
    const json& containers = field(spec, list);
    if (!containers.is_array()) continue;
    for (const json& c : containers) {
      if (c.is_object() && field(c, "name") == kSidecarName) return true;
    }
  }
  return false;
}

json patchFor(const json& pod, const json& container) {
  json ops = json::array();
  if (field(pod["spec"], "initContainers").is_array()) {
    ops.push_back({{"op", "add"}, {"path", "/spec/initContainers/0"}, {"value", container}});
  } else {
    ops.push_back({{"op", "add"}, {"path", "/spec/initContainers"}, {"value", {container}}});
  }
  if (field(pod["metadata"], "annotations").is_object()) {
    ops.push_back({{"op", "add"},
                   {"path", "/metadata/annotations/" + pointerEscape(kStatusAnnotation)},
                   {"value", kStatusInjected}});
  } else {
    ops.push_back({{"op", "add"},
                   {"path", "/metadata/annotations"},
                   {"value", {{std::string(kStatusAnnotation), kStatusInjected}}}});
  }
  return ops;
}

std::string joined(const std::vector<std::string>& problems) {
  std::string text;
  for (const std::string& p : problems) text += (text.empty() ? "" : "; ") + p;
  return text;
}

Decision refuse(const std::vector<std::string>& problems, const std::string& pod,
                const SidecarConfig& config) {
  bool fail = config.failurePolicy == FailurePolicy::Fail;
  std::string message = "pgkeel sidecar: " + joined(problems);
  if (!fail) message += " (pod admitted without the sidecar)";
  std::string log =
      "pod " + pod + (fail ? " refused: " : " admitted without the sidecar: ") + joined(problems);
  return {!fail, nullptr, message, log, Severity::Warning};
}

std::string podNamespace(const json& request, const json& metadata) {
  for (const json* from : {&request, &metadata}) {
    const json& ns = field(*from, "namespace");
    if (ns.is_string() && !ns.get<std::string>().empty()) return ns.get<std::string>();
  }
  return "";
}

std::string podName(const json& request, const json& metadata) {
  std::string ns = podNamespace(request, metadata);
  const json& name = field(metadata, "name");
  const json& generate = field(metadata, "generateName");
  std::string shown = name.is_string()       ? name.get<std::string>()
                      : generate.is_string() ? generate.get<std::string>() + "*"
                                             : "(unnamed)";
  return ns.empty() ? shown : ns + "/" + shown;
}

Decision decidePod(const json& request, const SidecarConfig& config, std::string& problem) {
  const json& pod = field(request, "object");
  if (!pod.is_object() || !field(pod, "metadata").is_object() || !field(pod, "spec").is_object()) {
    problem = "request.object is not a Pod with metadata and spec";
    return {};
  }
  AnnotationMap annotations = readAnnotations(pod["metadata"], problem);
  std::string name = podName(request, pod["metadata"]);
  if (!problem.empty()) return {};
  if (!wantsInjection(annotations)) return pass("pod " + name + ": not asking for pgkeel");
  if (hasSidecar(pod["spec"], annotations)) return pass("pod " + name + ": already has pgkeel");
  SidecarRequest asked = readSidecarRequest(annotations, podNamespace(request, pod["metadata"]));
  if (!asked.ok()) return refuse(asked.problems, name, config);
  std::vector<std::string> args = sidecarArgs(config, asked);
  std::vector<std::string> argProblems = checkSidecarArgs(args);
  for (std::string& p : argProblems) p = "pgkeel rejects the composed arguments: " + p;
  if (!argProblems.empty()) return refuse(argProblems, name, config);
  json tokenMount = findTokenMount(pod["spec"]);
  json container = sidecarContainer(config, args, tokenMount);
  if (tokenMount.is_null() && asked.kubernetesSource) {
    std::string warning =
        "pgkeel sidecar: the pod mounts no service-account token, so pgkeel cannot "
        "read the cluster from the Kubernetes API and will not become ready; keep "
        "automountServiceAccountToken on";
    return {true, patchFor(pod, container), warning, "pod " + name + ": " + warning,
            Severity::Warning};
  }
  return {true, patchFor(pod, container), "", "pod " + name + ": pgkeel sidecar injected",
          Severity::Info};
}

Decision decide(const json& request, const SidecarConfig& config, std::string& problem) {
  const json& kind = field(request, "kind");
  if (!kind.is_object() || !field(kind, "kind").is_string()) {
    problem = "request.kind is missing";
    return {};
  }
  const json& group = field(kind, "group");
  if (kind["kind"] != "Pod" || (!group.is_null() && group != "")) {
    return pass("not a Pod: " + kind["kind"].get<std::string>());
  }
  const json& operation = field(request, "operation");
  if (operation != "CREATE") return pass("pod operation " + operation.dump() + ": nothing to do");
  return decidePod(request, config, problem);
}

AdmissionOutcome answer(const std::string& uid, const Decision& decision) {
  json response = {{"allowed", decision.allowed}};
  if (!decision.patch.is_null()) {
    response["patchType"] = "JSONPatch";
    response["patch"] = base64(decision.patch.dump());
  }
  if (!decision.allowed) response["status"] = status400(decision.problem);
  if (decision.allowed && !decision.problem.empty()) response["warnings"] = {decision.problem};
  return {200, review(uid, response), decision.log, decision.severity};
}

}  // namespace

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                               reinterpret_cast<const unsigned char*>(data.data()),
                               static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(length));
  return out;
}

constexpr int kMaxDepth = 64;

AdmissionOutcome admit(std::string_view body, const SidecarConfig& config) {
  try {
    // Parsing is iterative, but copying and dumping a value recurse: anything nested deeper than
    // any pod is refused before the tree is used.
    bool tooDeep = false;
    json root = json::parse(
        body,
        [&tooDeep](int depth, json::parse_event_t, json&) {
          if (depth > kMaxDepth) tooDeep = true;
          return depth <= kMaxDepth;
        },
        false);
    if (tooDeep)
      return malformed("the body nests deeper than " + std::to_string(kMaxDepth) + " levels");
    if (root.is_discarded()) return malformed("the body is not JSON");
    std::string problem;
    std::string uid = readEnvelope(root, problem);
    if (!problem.empty()) return malformed(problem, uid);
    Decision decision = decide(root["request"], config, problem);
    if (!problem.empty()) return malformed(problem, uid);
    return answer(uid, decision);
  } catch (const std::exception& e) {
    return malformed(std::string("cannot read the request: ") + e.what());
  }
}

}  // namespace pgkeel::inject
