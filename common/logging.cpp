#include "common/logging.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>

namespace farmhand::common {

namespace {

spdlog::level::level_enum g_level = spdlog::level::info;

// True when stderr is the journal stream systemd set up for this service:
// JOURNAL_STREAM holds "DEV:INODE" of that stream (inherited by children, so it
// is compared with what stderr is now).
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr || *stream == '\0') return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st = {};
  if (fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

// %* writes the line's syslog priority as "<N>", which journald strips and
// stores, so `journalctl -p warning` filters farmhand's lines by level.
class SyslogPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char digit = '6';  // info
    if (msg.level <= spdlog::level::debug) digit = '7';
    if (msg.level == spdlog::level::warn) digit = '4';
    if (msg.level == spdlog::level::err) digit = '3';
    if (msg.level == spdlog::level::critical) digit = '2';
    const char text[] = {'<', digit, '>'};
    dest.append(text, text + sizeof(text));
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

}  // namespace

void setup_logging(const std::string& level) {
  g_level = spdlog::level::from_str(level);
  if (g_level == spdlog::level::off && level != "off") g_level = spdlog::level::info;
  spdlog::set_level(g_level);
  if (stderr_is_journal()) {
    // journald stamps each line itself and reads the level from the "<N>" prefix.
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("%*%n %l: %v");
    spdlog::set_formatter(std::move(formatter));
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %n %l: %v");
  }
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
