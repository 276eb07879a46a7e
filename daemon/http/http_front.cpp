#include "daemon/http/http_front.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>

#include "farmhand.pb.h"
#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/logging.h"
#include "common/signal_free_thread.h"
#include "common/wire.h"
#include "daemon/endpoints.h"
#include "daemon/http/live_json.h"

namespace farmhand::daemon {
namespace {

// The front's threads run at a lower priority than the loop (nice
// kHttpNice, per thread): when both want the CPU (a publish of thousands of
// stream entries written to every reader, a crowd of slow clients) the kernel
// gives it to the loop first, so watching the farm slows its dispatch as
// little as it can. They still have every cycle the loop leaves.
constexpr int kHttpNice = 10;

class NicedPool : public httplib::TaskQueue {
 public:
  explicit NicedPool(size_t threads) : pool_(threads) {}

  void enqueue(std::function<void()> fn) override {
    pool_.enqueue([fn = std::move(fn)] {
      thread_local bool niced = false;
      if (!niced) {
        niced = true;
        common::name_this_thread("fh-http");
        (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kHttpNice);
      }
      fn();
    });
  }

  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
};

constexpr size_t kMinTokenLength = 16;

// With a charset, which also keeps cpp-httplib from compressing the reply: it
// picks brotli whenever a browser accepts it, and brotli took 12 s over a
// 10,000-task page that is sent in 0.4 s as it is.
constexpr const char* kJson = "application/json; charset=utf-8";

// The route a path belongs to, numbers replaced ("/api/v1/jobs/{id}/cancel"),
// for the request counter's label.
std::string route_of(const std::string& path) {
  if (path.rfind("/api/", 0) != 0 && path != "/metrics") return "static";
  std::string route;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string segment = path.substr(start, end - start);
    const bool number = !segment.empty() && std::all_of(segment.begin(), segment.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    if (start > 0) route += '/';
    route += number ? "{id}" : segment;
    start = end + 1;
  }
  return route;
}

void json_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message) {
  nlohmann::json body{{"ok", false}, {"error_code", code}, {"error", message}};
  res.status = status;
  res.set_content(body.dump(), kJson);
}

// The HTTP status for the broker's error code (common/result.h names).
int status_for(const std::string& error_code) {
  if (error_code == "invalid_argument") return 400;
  if (error_code == "not_found") return 404;
  if (error_code == "unavailable" || error_code == "io") return 503;
  if (error_code == "timeout") return 504;
  return 409;  // refused as the state stands (an action on a finished job, ...)
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// A query parameter as an unsigned number; false (and 400 in `res`) when not one.
bool read_uint(const httplib::Request& req, const char* name, uint64_t max, uint64_t& out,
               httplib::Response& res) {
  if (!req.has_param(name)) return true;
  const std::string text = req.get_param_value(name);
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > max) {
    json_error(res, 400, "invalid_argument",
               fmt::format("{} must be a whole number from 0 to {}", name, max));
    return false;
  }
  out = value;
  return true;
}

template <typename Enum>
bool read_enum(const httplib::Request& req, const char* name, const std::string& prefix,
               bool (*parse)(const std::string&, Enum*), Enum& out, httplib::Response& res) {
  if (!req.has_param(name)) return true;
  std::string text = req.get_param_value(name);
  std::string upper = prefix;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (text.empty() || !parse(upper, &out)) {
    json_error(res, 400, "invalid_argument", fmt::format("unknown {} '{}'", name, text));
    return false;
  }
  return true;
}

// The filters of a job list, as GET /api/v1/jobs takes them; false after
// answering 400.
bool read_list_filter(const httplib::Request& req, httplib::Response& res,
                      wire::ListRequest& list) {
  uint64_t since = 0;
  wire::JobState state = wire::JOB_STATE_UNSPECIFIED;
  if (!read_uint(req, "since_unix_ms", INT64_MAX, since, res) ||
      !read_enum(req, "state", "JOB_", &wire::JobState_Parse, state, res)) {
    return false;
  }
  list.set_since_unix_ms(static_cast<int64_t>(since));
  list.set_state(state);
  if (req.has_param("user")) list.set_user(req.get_param_value("user"));
  if (req.has_param("project")) list.set_project(req.get_param_value("project"));
  if (req.has_param("text")) list.set_name_contains(req.get_param_value("text"));
  for (size_t i = 0; i < req.get_param_value_count("label"); ++i) {
    const std::string label = req.get_param_value("label", i);
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      json_error(res, 400, "invalid_argument", fmt::format("label '{}' is not KEY=VALUE", label));
      return false;
    }
    (*list.mutable_labels())[label.substr(0, eq)] = label.substr(eq + 1);
  }
  return true;
}

}  // namespace

Result<std::map<std::string, std::string>> load_http_tokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return fail(ErrorCode::kNotFound, fmt::format("cannot read http.tokens_file {}", path));
  }
  std::map<std::string, std::string> tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string user;
    std::string token;
    std::string extra;
    if (!(words >> user)) continue;
    if (!(words >> token) || (words >> extra)) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{} line {}: expected USER TOKEN", path, number));
    }
    if (token.size() < kMinTokenLength) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{} line {}: a token is at least {} characters", path, number,
                              kMinTokenLength));
    }
    if (!tokens.emplace(token, user).second) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{} line {}: token given twice", path, number));
    }
  }
  return tokens;
}

HttpFront::HttpFront(zmq::context_t& context, Options options)
    : context_(context), options_(std::move(options)) {}

HttpFront::~HttpFront() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

Result<std::unique_ptr<HttpFront>> HttpFront::start(zmq::context_t& context, Options options) {
  std::unique_ptr<HttpFront> front(new HttpFront(context, std::move(options)));
  const common::HttpConfig& config = front->options_.config;
  const bool tls = !config.tls_cert.empty();
  const common::HttpListen& listen = front->options_.listen;
  if (!config.tokens_file.empty()) {
    auto tokens = load_http_tokens(config.tokens_file);
    if (!tokens) return fail(tokens.error());
    front->token_users_ = std::move(*tokens);
  }
  if (!is_loopback(listen.host) && !config.allow_insecure) {
    if (!tls) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("http.listen {}:{} is beyond loopback without TLS (set "
                              "http.tls_cert and http.tls_key, or http.allow_insecure: true)",
                              listen.host, listen.port));
    }
    if (front->token_users_.empty()) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("http.listen {}:{} is beyond loopback without tokens (set "
                              "http.tokens_file, or http.allow_insecure: true)",
                              listen.host, listen.port));
    }
  }
  if (tls) {
    auto server =
        std::make_unique<httplib::SSLServer>(config.tls_cert.c_str(), config.tls_key.c_str());
    if (!server->is_valid()) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("cannot use http.tls_cert {} with http.tls_key {}", config.tls_cert,
                              config.tls_key));
    }
    front->server_ = std::move(server);
  } else {
    front->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& server = *front->server_;
  // What one client can hold: a request must arrive within 5 s (slowloris),
  // bodies are small, and a kept-alive connection is closed after 5 s idle.
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_keep_alive_timeout(5);
  server.set_keep_alive_max_count(100);
  server.set_payload_max_length(kMaxBodyBytes);
  // Headers and body leave as separate writes: without TCP_NODELAY, Nagle
  // holds the body until the client's delayed ACK (40 ms a small reply).
  server.set_tcp_nodelay(true);
  server.new_task_queue = [] { return new NicedPool(8 + kMaxStreams); };
  if (front->options_.count_request) {
    server.set_logger(
        [self = front.get()](const httplib::Request& req, const httplib::Response& res) {
          self->options_.count_request(route_of(req.path), res.status);
        });
  }
  front->routes();
  if (listen.port == 0) {
    front->port_ = server.bind_to_any_port(listen.host);
  } else if (server.bind_to_port(listen.host, listen.port)) {
    front->port_ = listen.port;
  } else {
    front->port_ = -1;
  }
  if (front->port_ <= 0) {
    return fail(ErrorCode::kUnavailable,
                fmt::format("cannot listen for HTTP on {}:{} (in use, or not an address of this "
                            "host)",
                            listen.host, listen.port));
  }
  const std::string host =
      listen.host.find(':') != std::string::npos ? "[" + listen.host + "]" : listen.host;
  front->url_ = fmt::format("{}://{}:{}", tls ? "https" : "http", host, front->port_);
  HttpFront* self = front.get();
  front->thread_ = common::start_signal_free_thread("fh-http-accept",
                                                    [self] { self->server_->listen_after_bind(); });
  return front;
}

std::optional<std::string> HttpFront::authorise(const httplib::Request& req, httplib::Response& res,
                                                bool action) const {
  const bool needed = action || options_.config.read == "token";
  std::string header = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  // A read may carry its token as ?access_token=: a browser's EventSource and
  // <img> send no header. Never an action's (a URL is easily logged or shared).
  if (header.empty() && !action && req.has_param("access_token")) {
    header = std::string(kBearer) + req.get_param_value("access_token");
  }
  if (header.size() <= kBearer.size() || header.compare(0, kBearer.size(), kBearer) != 0) {
    if (!needed) return std::string();
    res.set_header("WWW-Authenticate", "Bearer realm=\"farmhand\"");
    json_error(res, 401, "unauthenticated",
               action ? "an action needs a bearer token (http.tokens_file)"
                      : "reading needs a bearer token (http.read: token)");
    return std::nullopt;
  }
  const std::string token = header.substr(kBearer.size());
  // Every token is compared, in constant time each: how long the answer takes
  // tells nothing of how close a guess was.
  const std::string* user = nullptr;
  for (const auto& [known, name] : token_users_) {
    if (known.size() == token.size() &&
        CRYPTO_memcmp(known.data(), token.data(), known.size()) == 0) {
      user = &name;
    }
  }
  if (user == nullptr) {
    // Open reads do not need one: a stale token in a browser tab still reads.
    if (!needed) return std::string();
    json_error(res, 403, "forbidden", "the bearer token is not one of http.tokens_file's");
    return std::nullopt;
  }
  return *user;
}

std::unique_ptr<zmq::socket_t> HttpFront::borrow_socket() {
  {
    std::lock_guard lock(sockets_mutex_);
    if (!idle_sockets_.empty()) {
      auto socket = std::move(idle_sockets_.back());
      idle_sockets_.pop_back();
      return socket;
    }
  }
  auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  socket->set(zmq::sockopt::linger, 0);
  socket->connect(Endpoints::kHttpEndpoint);
  return socket;
}

void HttpFront::give_back(std::unique_ptr<zmq::socket_t> socket) {
  std::lock_guard lock(sockets_mutex_);
  idle_sockets_.push_back(std::move(socket));
}

void HttpFront::call(const std::string& user, const std::string& request_bytes,
                     httplib::Response& res) {
  wire::ClientRequest request;
  if (!request.ParseFromString(request_bytes)) {
    json_error(res, 500, "internal", "request not encodable");
    return;
  }
  const uint64_t id = next_request_id_++;
  request.set_version(common::kProtocolVersion);
  request.set_request_id(id);
  auto socket = borrow_socket();
  try {
    socket->send(zmq::buffer(user), zmq::send_flags::sndmore);
    socket->send(common::to_zmq(request), zmq::send_flags::none);
    const auto give_up = std::chrono::steady_clock::now() + kLoopTimeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          give_up - std::chrono::steady_clock::now());
      zmq::pollitem_t item{socket->handle(), 0, ZMQ_POLLIN, 0};
      if (left.count() <= 0 || zmq::poll(&item, 1, left) == 0) {
        // The socket may still get the late reply: it is dropped, not lent again.
        json_error(
            res, 503, "unavailable",
            fmt::format("the broker did not answer within {} s",
                        std::chrono::duration_cast<std::chrono::seconds>(kLoopTimeout).count()));
        return;
      }
      zmq::message_t frame;
      (void)socket->recv(frame, zmq::recv_flags::none);
      wire::ClientReply reply;
      if (!reply.ParseFromArray(frame.data(), static_cast<int>(frame.size())) ||
          reply.request_id() != id) {
        continue;  // a late reply to an earlier request on this socket
      }
      give_back(std::move(socket));
      std::string json;
      google::protobuf::util::JsonPrintOptions print;
      print.preserve_proto_field_names = true;
      print.always_print_primitive_fields = true;
      (void)google::protobuf::util::MessageToJsonString(reply, &json, print);
      res.status = reply.ok() ? 200 : status_for(reply.error_code());
      res.set_content(json, kJson);
      return;
    }
  } catch (const zmq::error_t& e) {
    json_error(res, 503, "unavailable", fmt::format("broker not reachable: {}", e.what()));
  }
}

namespace {

// How a reader gets a job's entry: whole, without the changed task indices
// (their count stays), or as another job's move (live_job_json without
// progress, and "moved": true).
enum class JobForm { kWhole, kNoTasks, kMove };

// One Server-Sent Event (the data on one line: JSON has no raw newline).
std::string sse_event(const ChangeFeed::Entry& entry, JobForm form) {
  std::string event = fmt::format("id: {}\nevent: {}\ndata: ", entry.id, entry.kind);
  auto out = std::back_inserter(event);
  if (entry.kind == "job") {
    const bool progress = form != JobForm::kMove;
    std::string job = entry.card  ? live_job_json(*entry.card->fixed, entry.card->moving, progress)
                      : entry.job ? live_job_json(*entry.job, progress)
                                  : "null";
    if (form == JobForm::kMove) {
      fmt::format_to(out, R"({{"id":"{}","job":{},"moved":true}})", entry.job_id, job);
    } else {
      // (A reader that asked for no task indices gets none: their count stays.)
      const std::span<const uint32_t> tasks = form == JobForm::kWhole
                                                  ? std::span<const uint32_t>(entry.tasks)
                                                  : std::span<const uint32_t>();
      fmt::format_to(out, R"({{"id":"{}","job":{},"tasks":[{}],"tasks_changed":{}}})", entry.job_id,
                     job, fmt::join(tasks, ","), entry.tasks_changed);
    }
  } else if (entry.kind == "farm") {
    fmt::format_to(out, R"({{"jobs_changed":{},"tasks_changed":{}}})", entry.jobs_changed,
                   entry.tasks_changed);
  } else if (entry.kind == "worker") {
    event += R"({"name":)";
    append_json_string(event, entry.name);
    event += R"(,"what":)";
    append_json_string(event, entry.what);
    event += '}';
  } else {
    event += R"({"event_id":)";
    append_json_string(event, entry.name);
    event += '}';
  }
  event += "\n\n";
  return event;
}

// Whose job changes a stream reader wants: every job's (`all`, the default),
// none (`none`: a page about the whole farm, which reloads on the `farm`
// entry of each publish), or every job's moves only (made, changed state,
// forgotten: `states`) and every change of the jobs it lists (`12,13,...`:
// the rows a page shows). A
// busy farm changes thousands of jobs a second: a page of 100 rows wants
// 100 of them, and a browser sent them all would spend its time parsing.
// The jobs it does not list it may narrow further, as a list is filtered
// (state, user, project, label, text, since_unix_ms) and to the jobs newer
// than one (`newer_than`: a newest-first page's top row): a page only
// reloads for a job that could come onto it, and a busy farm moves a
// thousand others a second.
struct JobsWanted {
  bool all = true;
  bool none = false;
  std::vector<uint64_t> ids;  // sorted
  wire::ListRequest filter;   // for the jobs not listed
  std::string needle;         // its text, lower-cased
  bool filtered = false;      // a filter was given
  uint64_t newer_than = 0;

  // Every change of this job (else only its moves).
  bool listed(const ChangeFeed::Entry& entry) const {
    return all || entry.kind != "job" || std::binary_search(ids.begin(), ids.end(), entry.job_id);
  }

  bool wants(const ChangeFeed::Entry& entry) const {
    if (entry.kind != "job") return true;
    if (none) return false;
    if (!all && std::binary_search(ids.begin(), ids.end(), entry.job_id)) return true;
    if (!all && !entry.moved) return false;
    return entry.job_id > newer_than && passes_filter(entry);
  }

  bool passes_filter(const ChangeFeed::Entry& entry) const {
    if (!filtered) return true;
    // A forgotten job has no card left to match: it comes (rare; a page that
    // showed it reloads).
    return !entry.card || JobBoard::matches(filter, needle, *entry.card);
  }
};

constexpr size_t kMaxStreamJobs = 1000;

std::optional<JobsWanted> read_jobs_wanted(const std::string& text) {
  JobsWanted wanted;
  if (text.empty() || text == "all") return wanted;
  wanted.all = false;
  if (text == "states") return wanted;
  if (text == "none") {
    wanted.none = true;
    return wanted;
  }
  for (size_t start = 0; start <= text.size();) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    uint64_t id = 0;
    auto [stop, ec] = std::from_chars(text.data() + start, text.data() + end, id);
    if (ec != std::errc{} || stop != text.data() + end || id == 0) return std::nullopt;
    wanted.ids.push_back(id);
    if (wanted.ids.size() > kMaxStreamJobs) return std::nullopt;
    start = end + 1;
  }
  std::sort(wanted.ids.begin(), wanted.ids.end());
  return wanted;
}

}  // namespace

void HttpFront::stream(const httplib::Request& req, httplib::Response& res) {
  if (!authorise(req, res, /*action=*/false)) return;
  if (++streams_ > kMaxStreams) {
    --streams_;
    json_error(res, 503, "unavailable",
               fmt::format("{} live streams are open already; try again later", kMaxStreams));
    return;
  }
  uint64_t last = 0;
  const std::string resume = req.has_header("Last-Event-ID") ? req.get_header_value("Last-Event-ID")
                                                             : req.get_param_value("last_event_id");
  if (!resume.empty()) {
    auto [end, ec] = std::from_chars(resume.data(), resume.data() + resume.size(), last);
    if (ec != std::errc{} || end != resume.data() + resume.size()) last = 0;
  }
  // Which jobs' changed task indices the reader wants: all (the default),
  // none (a list of jobs), or one job's (a job's page).
  constexpr uint64_t kAllTasks = UINT64_MAX;
  constexpr uint64_t kNoTasks = 0;
  uint64_t tasks_of = kAllTasks;
  if (const std::string tasks = req.get_param_value("tasks"); tasks == "none") {
    tasks_of = kNoTasks;
  } else if (!tasks.empty() && tasks != "all") {
    auto [end, ec] = std::from_chars(tasks.data(), tasks.data() + tasks.size(), tasks_of);
    if (ec != std::errc{} || end != tasks.data() + tasks.size() || tasks_of == kNoTasks ||
        tasks_of == kAllTasks) {
      --streams_;
      return json_error(res, 400, "invalid_argument",
                        fmt::format("tasks must be all, none or a job id, not '{}'", tasks));
    }
  }
  const std::string jobs = req.get_param_value("jobs");
  auto wanted = read_jobs_wanted(jobs);
  if (!wanted) {
    --streams_;
    return json_error(res, 400, "invalid_argument",
                      fmt::format("jobs must be all, states, none or up to {} job ids separated by "
                                  "commas, not '{}'",
                                  kMaxStreamJobs, jobs.substr(0, 80)));
  }
  // The other jobs, narrowed as a list is filtered, and to the newer ones.
  if (!read_list_filter(req, res, wanted->filter) ||
      !read_uint(req, "newer_than", UINT64_MAX, wanted->newer_than, res)) {
    --streams_;
    return;
  }
  const wire::ListRequest& filter = wanted->filter;
  wanted->filtered = filter.state() != wire::JOB_STATE_UNSPECIFIED || !filter.user().empty() ||
                     !filter.project().empty() || !filter.name_contains().empty() ||
                     filter.since_unix_ms() != 0 || !filter.labels().empty();
  wanted->needle = ascii_lower(filter.name_contains());
  ChangeFeed& feed = *options_.feed;
  uint64_t after = 0;
  const bool complete = feed.subscribe(last, after);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  // Not kept alive: a browser leaving the page would otherwise hold the
  // connection to drain the endless body for reuse, one of its six per host,
  // and the next pages' requests stalled behind it for a minute.
  res.set_header("Connection", "close");
  auto first = std::make_shared<bool>(true);
  auto last_write = std::chrono::steady_clock::now();
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, &feed, after, complete, first, tasks_of, wanted = std::move(*wanted), last_write](
          size_t, httplib::DataSink& sink) mutable {
        std::string text;
        if (*first) {
          *first = false;
          // A reader that resumed from further back than the feed keeps is
          // told to reload what it shows from the API.
          text = complete ? "retry: 2000\n\n" : "retry: 2000\nevent: reset\ndata: {}\n\n";
          return sink.write(text.data(), text.size());
        }
        const uint64_t before = after;
        bool behind = false;
        auto entries = feed.wait_after(
            after, std::chrono::steady_clock::now() + kKeepAlive,
            [&wanted](const ChangeFeed::Entry& entry) { return wanted.wants(entry); }, behind);
        if (behind) text += "event: reset\ndata: {}\n\n";  // fell behind the ring
        // Written in slices of about kSlice: a publish of thousands of
        // entries made one string of megabytes per stream (mapped, faulted
        // in and copied again by the chunked writer, every time).
        constexpr size_t kSlice = 32 * 1024;
        text.reserve(kSlice + 4096);
        for (const auto& entry : entries) {
          const bool with_tasks = entry->kind != "job" || tasks_of == kAllTasks ||
                                  (tasks_of != kNoTasks && tasks_of == entry->job_id);
          if (!wanted.listed(*entry)) {
            std::call_once(entry->move_once,
                           [&] { entry->move = sse_event(*entry, JobForm::kMove); });
            text += entry->move;
          } else if (with_tasks) {
            std::call_once(entry->text_once,
                           [&] { entry->text = sse_event(*entry, JobForm::kWhole); });
            text += entry->text;
          } else {
            std::call_once(entry->brief_once,
                           [&] { entry->brief = sse_event(*entry, JobForm::kNoTasks); });
            text += entry->brief;
          }
          if (text.size() >= kSlice) {
            if (!sink.write(text.data(), text.size())) return false;
            last_write = std::chrono::steady_clock::now();
            text.clear();
          }
        }
        const auto now = std::chrono::steady_clock::now();
        if (after == before) {  // nothing came: the wait timed out, or the feed closed
          if (feed.closed()) {
            sink.done();
            return true;
          }
          after = std::max(after, feed.last_id());
          text = ": keepalive\n\n";
        } else if (text.empty() && now - last_write >= kKeepAlive) {
          text = ": keepalive\n\n";  // everything since was of other jobs
        }
        if (text.empty()) return true;  // (an empty chunk would end the stream)
        last_write = now;
        return sink.write(text.data(), text.size());
      },
      [this, &feed](bool) {
        feed.unsubscribe();
        --streams_;
      });
}

namespace {

// An action's JSON body (may be empty) into `message`, by protobuf's JSON
// mapping; false after answering 400 with what was wrong.
bool read_body(const httplib::Request& req, httplib::Response& res,
               google::protobuf::Message& message) {
  if (req.body.empty()) return true;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(req.body, &message, options);
  if (!status.ok()) {
    json_error(res, 400, "invalid_argument",
               fmt::format("request body not understood: {}", std::string(status.message())));
    return false;
  }
  return true;
}

// A job's summary as the API's JSON (protobuf's mapping, every field shown).
std::string summary_json(const wire::JobSummary& summary) {
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(summary, &json, print);
  return json;
}

}  // namespace

void HttpFront::jobs(const httplib::Request& req, httplib::Response& res) {
  if (!authorise(req, res, /*action=*/false)) return;
  JobBoard::Query query;
  uint64_t limit = 100;
  if (!read_uint(req, "limit", 10'000, limit, res) ||
      !read_uint(req, "offset", UINT32_MAX, query.offset, res) ||
      !read_list_filter(req, res, query.filter)) {
    return;
  }
  query.limit = static_cast<uint32_t>(limit);
  query.sort = req.get_param_value("sort");
  query.cursor = req.get_param_value("cursor");
  auto snapshot = options_.board->snapshot();
  auto page = JobBoard::query(*snapshot, query);
  if (!page) return json_error(res, 400, "invalid_argument", page.error().reason);
  std::string body = R"({"ok":true,"list":{"jobs":[)";
  for (size_t i = 0; i < page->jobs.size(); ++i) {
    const JobBoard::Card& card = *page->jobs[i];
    std::call_once(card.json_once, [&] { card.json = summary_json(card.summary()); });
    if (i > 0) body += ',';
    body += card.json;
  }
  const uint64_t next_offset =
      query.cursor.empty() && !page->next_cursor.empty() ? query.offset + page->jobs.size() : 0;
  body += fmt::format(
      R"(],"matched":"{}","next_offset":"{}","next_cursor":"{}","as_of_unix_ms":"{}"}}}})",
      page->matched, next_offset, page->next_cursor, page->as_of_unix_ms);
  res.set_content(body, kJson);
}

void HttpFront::image(const httplib::Request& req, httplib::Response& res) {
  if (!authorise(req, res, /*action=*/false)) return;
  const core::JobId id = std::stoull(req.matches[1].str());
  auto card = JobBoard::find(*options_.board->snapshot(), id);
  if (!card) return json_error(res, 404, "not_found", fmt::format("unknown job {}", id));
  const wire::JobSummary& job = *card->fixed;
  auto output = job.params().find("output");
  if ((job.kind() != "thumbnail" && job.kind() != "convert" && job.kind() != "contactsheet") ||
      output == job.params().end()) {
    return json_error(res, 404, "not_found",
                      fmt::format("job {} is a {} job: only thumbnail, convert and contactsheet "
                                  "jobs write an image to show",
                                  id, job.kind()));
  }
  const std::string& path = output->second;
  std::string ext = path.substr(
      path.find_last_of('.') == std::string::npos ? path.size() : path.find_last_of('.') + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const char* type = ext == "png"                    ? "image/png"
                     : ext == "jpg" || ext == "jpeg" ? "image/jpeg"
                                                     : nullptr;
  if (type == nullptr || path.find_first_of("#@%") != std::string::npos) {
    return json_error(
        res, 404, "not_found",
        fmt::format("job {} writes {}: only a single JPEG or PNG is shown", id, path));
  }
  if (card->moving.state != wire::JOB_SUCCEEDED) {
    return json_error(res, 404, "not_found",
                      fmt::format("job {} has not succeeded: no image yet", id));
  }
  // The file the job wrote, if it is still a file of its own: a symlink put in
  // its place later is not followed, and nothing larger than kMaxImageBytes
  // is read.
  constexpr off_t kMaxImageBytes = 64 << 20;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

  struct stat st {};

  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxImageBytes) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return json_error(res, 404, "not_found",
                      fmt::format("job {}: {} cannot be shown ({})", id, path,
                                  fd < 0 ? std::strerror(err) : "not a regular file under 64 MiB"));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(got);
  res.set_header("Cache-Control", "no-cache");
  res.set_content(std::move(bytes), type);
}

void HttpFront::routes() {
  httplib::Server& s = *server_;
  // A route answered by the loop: `build` makes the client request from the
  // HTTP one (false after answering 400), after the token is checked.
  auto to_loop = [this](bool is_action, auto build) {
    return [this, is_action, build](const httplib::Request& req, httplib::Response& res) {
      auto user = authorise(req, res, is_action);
      if (!user) return;
      wire::ClientRequest request;
      if (!build(req, res, request)) return;
      call(*user, request.SerializeAsString(), res);
    };
  };
  auto read = [&to_loop](auto build) { return to_loop(false, build); };
  s.Get("/api/v1/health",
        read([](const httplib::Request&, httplib::Response&, wire::ClientRequest& r) {
          r.mutable_health();
          return true;
        }));
  if (options_.board) {
    s.Get("/api/v1/jobs",
          [this](const httplib::Request& req, httplib::Response& res) { jobs(req, res); });
  } else {
    s.Get("/api/v1/jobs",
          read([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
            wire::ListRequest& list = *r.mutable_list();
            uint64_t limit = 100;
            uint64_t offset = 0;
            if (!read_uint(req, "limit", 10'000, limit, res) ||
                !read_uint(req, "offset", UINT32_MAX, offset, res) ||
                !read_list_filter(req, res, list)) {
              return false;
            }
            list.set_limit(static_cast<uint32_t>(limit));
            list.set_offset(offset);
            return true;
          }));
  }
  s.Get(R"(/api/v1/jobs/(\d{1,19}))",
        read([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
          wire::StatusRequest& status = *r.mutable_status();
          uint64_t offset = 0;
          uint64_t limit = 100;
          wire::TaskState state = wire::TASK_STATE_UNSPECIFIED;
          if (!read_uint(req, "tasks_offset", UINT64_MAX, offset, res) ||
              !read_uint(req, "tasks_limit", 10'000, limit, res) ||
              !read_enum(req, "tasks_state", "TASK_", &wire::TaskState_Parse, state, res)) {
            return false;
          }
          status.set_job_id(std::stoull(req.matches[1].str()));
          status.set_tasks(true);
          status.set_tasks_offset(offset);
          status.set_tasks_limit(static_cast<uint32_t>(limit));
          status.set_tasks_state(state);
          return true;
        }));
  // Every task's state, a letter each, for the monitor's grid (100,000 tasks
  // are 100 KB and one pass over an array on the loop).
  s.Get(R"(/api/v1/jobs/(\d{1,19})/states)",
        read([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
          wire::StatusRequest& status = *r.mutable_status();
          uint64_t offset = 0;
          uint64_t limit = 0;
          if (!read_uint(req, "offset", UINT64_MAX, offset, res) ||
              !read_uint(req, "limit", 1'000'000, limit, res)) {
            return false;
          }
          status.set_job_id(std::stoull(req.matches[1].str()));
          status.set_task_states(true);
          status.set_tasks_offset(offset);
          status.set_tasks_limit(static_cast<uint32_t>(limit));
          return true;
        }));
  if (options_.board) {
    s.Get(R"(/api/v1/jobs/(\d{1,19})/image)",
          [this](const httplib::Request& req, httplib::Response& res) { image(req, res); });
  }
  // A task's attempts with their logs (a running attempt's log so far, asked
  // of its worker): farmhand logs JOB --task N.
  s.Get(R"(/api/v1/jobs/(\d{1,19})/tasks/(\d{1,10})/logs)",
        read([](const httplib::Request& req, httplib::Response&, wire::ClientRequest& r) {
          wire::LogsRequest& logs = *r.mutable_logs();
          logs.set_job_id(std::stoull(req.matches[1].str()));
          logs.set_task(static_cast<int64_t>(std::stoull(req.matches[2].str())));
          return true;
        }));
  s.Get("/api/v1/workers",
        read([](const httplib::Request&, httplib::Response&, wire::ClientRequest& r) {
          r.mutable_workers();
          return true;
        }));
  s.Get("/api/v1/limits",
        read([](const httplib::Request&, httplib::Response&, wire::ClientRequest& r) {
          r.mutable_limits();
          return true;
        }));
  s.Get("/api/v1/events",
        read([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
          uint64_t limit = 100;
          if (!read_uint(req, "limit", 10'000, limit, res)) return false;
          r.mutable_events()->set_limit(static_cast<uint32_t>(limit));
          return true;
        }));
  // Actions: whatever the CLI can do, each a POST with a bearer token and an
  // optional Idempotency-Key header (the CLI's --key). An optional JSON body
  // gives the request's other fields by their protobuf names ({"tasks":
  // "3,7-9"}, {"priority": 80}, {"reason": "disk swap"}); the path gives the
  // rest, and wins.
  auto action = [&to_loop](auto build) { return to_loop(true, build); };
  s.Post(R"(/api/v1/jobs/(\d{1,19})/(cancel|pause|resume|retry|kill|skip|requeue|unblock))",
         action([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
           wire::JobActionRequest& request = *r.mutable_action();
           if (!read_body(req, res, request)) return false;
           request.set_job_id(std::stoull(req.matches[1].str()));
           wire::JobActionRequest::Action verb = wire::JobActionRequest::ACTION_UNSPECIFIED;
           std::string name = req.matches[2].str();
           for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
           (void)wire::JobActionRequest::Action_Parse(name, &verb);
           request.set_action(verb);
           request.set_idempotency_key(req.get_header_value("Idempotency-Key"));
           return true;
         }));
  s.Post(R"(/api/v1/jobs/(\d{1,19})/set)",
         action([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
           wire::JobSetRequest& request = *r.mutable_job_set();
           if (!read_body(req, res, request)) return false;
           request.set_job_id(std::stoull(req.matches[1].str()));
           request.set_idempotency_key(req.get_header_value("Idempotency-Key"));
           return true;
         }));
  s.Post(R"(/api/v1/workers/([^/]{1,255})/(enable|disable|drain))",
         action([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
           wire::WorkerControlRequest& request = *r.mutable_worker_control();
           if (!read_body(req, res, request)) return false;
           request.set_name(req.matches[1].str());
           const std::string verb = req.matches[2].str();
           request.set_action(verb == "enable"    ? wire::WorkerControlRequest::ENABLE
                              : verb == "disable" ? wire::WorkerControlRequest::DISABLE
                                                  : wire::WorkerControlRequest::DRAIN);
           request.set_idempotency_key(req.get_header_value("Idempotency-Key"));
           return true;
         }));
  s.Post(R"(/api/v1/limits/([^/]{1,64}))",
         action([](const httplib::Request& req, httplib::Response& res, wire::ClientRequest& r) {
           wire::LimitSet& request = *r.mutable_limits()->mutable_set();
           if (!read_body(req, res, request)) return false;
           // No capacity is not 0 (which stops new tasks holding the limit).
           if (req.body.find("\"capacity\"") == std::string::npos) {
             json_error(res, 400, "invalid_argument",
                        R"(a limit is set with a body naming its capacity: {"capacity": 30})");
             return false;
           }
           request.set_name(req.matches[1].str());
           request.set_idempotency_key(req.get_header_value("Idempotency-Key"));
           return true;
         }));
  if (options_.feed) {
    s.Get("/api/v1/stream",
          [this](const httplib::Request& req, httplib::Response& res) { stream(req, res); });
  }
  // The monitor: static files, no build step (web/).
  if (!options_.web_dir.empty() && !s.set_mount_point("/", options_.web_dir)) {
    common::logger("broker")->warn("http: monitor files not found dir={}", options_.web_dir);
  }
  if (options_.metrics) {
    s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
      if (!authorise(req, res, /*action=*/false)) return;
      res.set_content(options_.metrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    json_error(res, res.status, res.status == 404 ? "not_found" : "invalid_argument",
               res.status == 404 ? "no such resource (see docs/openapi.yaml)"
                                 : fmt::format("request refused ({})", res.status));
  });
}

}  // namespace farmhand::daemon
