// Admission: an AdmissionReview (admission.k8s.io/v1) in, the answer with the sidecar's patch out.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "inject/sidecar_config.h"

namespace pgkeel::inject {

enum class Severity { Debug, Info, Warning };

struct AdmissionOutcome {
  int httpStatus = 200;  // 400 for a body that is not an AdmissionReview
  nlohmann::json body;   // the AdmissionReview answer, or a v1 Status when no uid could be read
  std::string logLine;   // what was decided and why, naming the pod
  Severity severity = Severity::Debug;
};

// Pure: decides for one request body. Never throws.
AdmissionOutcome admit(std::string_view body, const SidecarConfig& config);

// RFC 4648 base64 (OpenSSL's EVP_EncodeBlock), no line breaks.
std::string base64(std::string_view data);

}  // namespace pgkeel::inject
