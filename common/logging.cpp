#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace farmhand::common {

namespace {

spdlog::level::level_enum g_level = spdlog::level::info;

}  // namespace

void setup_logging(const std::string& level) {
  g_level = spdlog::level::from_str(level);
  if (g_level == spdlog::level::off && level != "off") g_level = spdlog::level::info;
  spdlog::set_level(g_level);
  // Under systemd the journal adds its own timestamp; a short one still helps on terminals.
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %l: %v");
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(g_level); });
}

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  auto existing = spdlog::get(component);
  if (existing) return existing;
  auto created = spdlog::stderr_logger_st(component);
  created->set_level(g_level);
  return created;
}

}  // namespace farmhand::common
