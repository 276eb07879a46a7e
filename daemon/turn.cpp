#include "daemon/turn.h"

namespace farmhand::daemon {

void set_error(wire::ClientReply& reply, const Error& error) {
  reply.set_ok(false);
  reply.set_error(error.reason);
  reply.set_error_code(std::string(error_code_name(error.code)));
}

bool acknowledges_write(const wire::ClientReply& reply) {
  return reply.ok() && (reply.has_submit() || reply.has_action() || reply.has_publish() ||
                        reply.has_worker_control() || (reply.has_limits() && reply.limits().set()));
}

}  // namespace farmhand::daemon
