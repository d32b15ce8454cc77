#include "tools/sim/sim_server.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <optional>
#include <queue>
#include <thread>
#include <vector>

namespace tollgate::sim {
namespace {

using nlohmann::json;

enum class Flavor { kMistral, kAnthropic, kDeepSeek, kOllamaNative, kOllamaOpenAI };

// Everything one simulated completion needs, read from the request once.
struct Plan {
  Flavor flavor;
  std::string model;
  bool stream = false;
  bool include_usage = false;  // OpenAI-style stream_options.include_usage
  int64_t input_tokens = 1;
  int64_t output_tokens = 16;
  int64_t cache_read = 0, cache_write = 0, cache_write_1h = 0, reasoning = 0;
  int delay_ms = 0;
  int cut_after = -1;
  int stream_error_after = -1;
  int keepalives = 0;
  std::string id;
};

int64_t HeaderInt(const httplib::Request& req, const char* name, int64_t fallback) {
  if (!req.has_header(name)) return fallback;
  try {
    return std::stoll(req.get_header_value(name));
  } catch (...) {
    return fallback;
  }
}

// Characters of every piece of text in the request that a tokenizer would see.
size_t TextChars(const json& j) {
  if (j.is_string()) return j.get_ref<const std::string&>().size();
  size_t n = 0;
  if (j.is_array()) {
    for (const json& e : j) n += TextChars(e);
  } else if (j.is_object()) {
    for (const char* key : {"content", "text", "system", "prompt", "suffix", "input", "messages"}) {
      if (j.contains(key)) n += TextChars(j[key]);
    }
  }
  return n;
}

int64_t Ceil4(size_t chars) { return std::max<int64_t>(1, static_cast<int64_t>((chars + 3) / 4)); }

std::string Word(int64_t i) { return i == 0 ? "Hello" : " w" + std::to_string(i); }

std::string Now() {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
}

bool IsMistralModel(const std::string& m) {
  for (const char* p :
       {"mistral", "codestral", "ministral", "pixtral", "magistral", "devstral", "open-mistral"}) {
    if (m.rfind(p, 0) == 0) return true;
  }
  return false;
}

json ErrorBody(Flavor f, int status, const std::string& message) {
  switch (f) {
    case Flavor::kMistral:
      return {{"object", "error"},
              {"message", message},
              {"type", status == 429 ? "rate_limited" : "invalid_request_error"},
              {"param", nullptr},
              {"code", nullptr}};
    case Flavor::kAnthropic: {
      std::string type = status == 429   ? "rate_limit_error"
                         : status == 529 ? "overloaded_error"
                         : status >= 500 ? "api_error"
                         : status == 401 ? "authentication_error"
                         : status == 404 ? "not_found_error"
                                         : "invalid_request_error";
      return {{"type", "error"},
              {"error", {{"type", type}, {"message", message}}},
              {"request_id", "req_sim"}};
    }
    case Flavor::kOllamaNative:
      return {{"error", message}};
    default:
      return {{"error",
               {{"message", message},
                {"type", status >= 500 ? "api_error" : "invalid_request_error"},
                {"param", nullptr},
                {"code", nullptr}}}};
  }
}

void SendError(httplib::Response& res, Flavor f, int status, const std::string& message) {
  res.status = status;
  if (status == 429) res.set_header("retry-after", "1");
  res.set_content(ErrorBody(f, status, message).dump(), "application/json");
}

json OpenAIUsage(const Plan& p) {
  json u = {{"prompt_tokens", p.input_tokens},
            {"completion_tokens", p.output_tokens + p.reasoning},
            {"total_tokens", p.input_tokens + p.output_tokens + p.reasoning}};
  if (p.flavor == Flavor::kDeepSeek) {
    int64_t hit = std::min(p.cache_read, p.input_tokens);
    u["prompt_cache_hit_tokens"] = hit;
    u["prompt_cache_miss_tokens"] = p.input_tokens - hit;
    u["prompt_tokens_details"] = {{"cached_tokens", hit}};
    u["completion_tokens_details"] = {{"reasoning_tokens", p.reasoning}};
  }
  return u;
}

json AnthropicUsage(const Plan& p, int64_t output) {
  return {{"input_tokens", p.input_tokens},
          {"cache_creation_input_tokens", p.cache_write + p.cache_write_1h},
          {"cache_read_input_tokens", p.cache_read},
          {"cache_creation",
           {{"ephemeral_5m_input_tokens", p.cache_write},
            {"ephemeral_1h_input_tokens", p.cache_write_1h}}},
          {"output_tokens", output},
          {"service_tier", "standard"}};
}

std::string FullText(const Plan& p) {
  std::string s;
  for (int64_t i = 0; i < p.output_tokens; ++i) s += Word(i);
  return s;
}

// One step of a stream: after `delay_ms`, write `bytes`; then go on, end the stream
// properly, or cut the connection (no last chunk).
struct Step {
  enum class Then { kMore, kEnd, kCut };
  int delay_ms = 0;
  std::string bytes;
  Then then = Then::kMore;
};

// The stream, as a list of wire frames, produced lazily one step at a time.
class StreamWriter {
 public:
  explicit StreamWriter(Plan p) : p_(std::move(p)) {}

  // The next step; call until one says kEnd or kCut.
  Step Next() {
    if (keepalives_sent_ < p_.keepalives) {
      ++keepalives_sent_;
      return {0, ": keep-alive\n\n"};
    }
    if (!opened_) {
      opened_ = true;
      return {0, Opening()};
    }
    if (token_ < p_.output_tokens) {
      if (p_.cut_after >= 0 && token_ >= p_.cut_after)
        return {0, "", Step::Then::kCut};  // abrupt close, no terminator
      if (p_.stream_error_after >= 0 && token_ >= p_.stream_error_after)
        return {0, InStreamError(), Step::Then::kEnd};
      return {p_.delay_ms, Token(token_++)};
    }
    // The closing frames are paced too, one write each, like a real provider's.
    if (!closing_) closing_ = Closing();
    if (closed_ < closing_->size()) return {p_.delay_ms, (*closing_)[closed_++]};
    return {0, "", Step::Then::kEnd};
  }

  // Writes every step at once (a stream without delays); false cuts the connection.
  bool Run(httplib::DataSink& sink) {
    for (;;) {
      Step step = Next();
      bool written = step.bytes.empty() || sink.write(step.bytes.data(), step.bytes.size());
      if (step.then == Step::Then::kCut) return false;
      if (step.then == Step::Then::kEnd) {
        sink.done();
        return true;
      }
      if (!written) return false;
    }
  }

 private:
  int keepalives_sent_ = 0;
  bool opened_ = false;
  int64_t token_ = 0;
  std::optional<std::vector<std::string>> closing_;
  size_t closed_ = 0;

  static std::string Sse(const json& j) { return "data: " + j.dump() + "\n\n"; }
  static std::string Event(const char* name, const json& j) {
    return std::string("event: ") + name + "\ndata: " + j.dump() + "\n\n";
  }
  json Chunk(json delta, json finish) const {
    json c = {
        {"id", p_.id},
        {"object", "chat.completion.chunk"},
        {"created", std::stoll(Now())},
        {"model", p_.model},
        {"choices",
         json::array(
             {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", std::move(finish)}}})}};
    if (p_.flavor == Flavor::kDeepSeek) c["usage"] = nullptr;
    return c;
  }

  std::string Opening() const {
    switch (p_.flavor) {
      case Flavor::kAnthropic: {
        json msg = {{"id", p_.id},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", p_.model},
                    {"content", json::array()},
                    {"stop_reason", nullptr},
                    {"stop_sequence", nullptr},
                    {"usage", AnthropicUsage(p_, 1)}};
        return Event("message_start", {{"type", "message_start"}, {"message", msg}}) +
               Event("content_block_start", {{"type", "content_block_start"},
                                             {"index", 0},
                                             {"content_block", {{"type", "text"}, {"text", ""}}}}) +
               Event("ping", {{"type", "ping"}});
      }
      case Flavor::kOllamaNative:
        return "";
      default:
        return Sse(Chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
    }
  }

  std::string Token(int64_t i) const {
    switch (p_.flavor) {
      case Flavor::kAnthropic:
        return Event("content_block_delta",
                     {{"type", "content_block_delta"},
                      {"index", 0},
                      {"delta", {{"type", "text_delta"}, {"text", Word(i)}}}});
      case Flavor::kOllamaNative:
        return json{{"model", p_.model},
                    {"created_at", "2026-01-01T00:00:00Z"},
                    {"message", {{"role", "assistant"}, {"content", Word(i)}}},
                    {"done", false}}
                   .dump() +
               "\n";
      default:
        return Sse(Chunk({{"content", Word(i)}}, nullptr));
    }
  }

  std::vector<std::string> Closing() const {
    switch (p_.flavor) {
      case Flavor::kAnthropic:
        return {Event("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}),
                // message_delta usage is cumulative: the full output count, input side repeated.
                Event("message_delta",
                      {{"type", "message_delta"},
                       {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                       {"usage",
                        {{"output_tokens", p_.output_tokens},
                         {"input_tokens", p_.input_tokens},
                         {"cache_read_input_tokens", p_.cache_read},
                         {"cache_creation_input_tokens", p_.cache_write + p_.cache_write_1h}}}}),
                Event("message_stop", {{"type", "message_stop"}})};
      case Flavor::kOllamaNative:
        return {json{{"model", p_.model},
                     {"created_at", "2026-01-01T00:00:00Z"},
                     {"message", {{"role", "assistant"}, {"content", ""}}},
                     {"done", true},
                     {"done_reason", "stop"},
                     {"total_duration", 1000},
                     {"load_duration", 10},
                     {"prompt_eval_count", p_.input_tokens},
                     {"prompt_eval_duration", 100},
                     {"eval_count", p_.output_tokens},
                     {"eval_duration", 500}}
                    .dump() +
                "\n"};
      case Flavor::kMistral: {
        // Mistral always puts usage on the finish chunk.
        json last = Chunk(json::object(), "stop");
        last["usage"] = OpenAIUsage(p_);
        return {Sse(last), "data: [DONE]\n\n"};
      }
      default: {
        std::vector<std::string> out = {Sse(Chunk(json::object(), "stop"))};
        if (p_.include_usage) {
          json u = {{"id", p_.id},
                    {"object", "chat.completion.chunk"},
                    {"created", std::stoll(Now())},
                    {"model", p_.model},
                    {"choices", json::array()},
                    {"usage", OpenAIUsage(p_)}};
          out.push_back(Sse(u));
        }
        out.push_back("data: [DONE]\n\n");
        return out;
      }
    }
  }

  std::string InStreamError() const {
    switch (p_.flavor) {
      case Flavor::kAnthropic:
        return Event("error",
                     {{"type", "error"},
                      {"error", {{"type", "overloaded_error"}, {"message", "Overloaded"}}}});
      case Flavor::kOllamaNative:
        return json{{"error", "an error was encountered while running the model"}}.dump() + "\n";
      default:
        return Sse({{"error",
                     {{"message", "simulated stream error"},
                      {"type", "api_error"},
                      {"param", nullptr},
                      {"code", nullptr}}}});
    }
  }

  Plan p_;
};

json NonStreamBody(const Plan& p, const std::string& path) {
  switch (p.flavor) {
    case Flavor::kAnthropic:
      return {{"id", p.id},
              {"type", "message"},
              {"role", "assistant"},
              {"model", p.model},
              {"content", json::array({{{"type", "text"}, {"text", FullText(p)}}})},
              {"stop_reason", "end_turn"},
              {"stop_sequence", nullptr},
              {"usage", AnthropicUsage(p, p.output_tokens)}};
    case Flavor::kOllamaNative: {
      json j = {{"model", p.model},
                {"created_at", "2026-01-01T00:00:00Z"},
                {"done", true},
                {"done_reason", "stop"},
                {"total_duration", 1000},
                {"load_duration", 10},
                {"prompt_eval_count", p.input_tokens},
                {"prompt_eval_duration", 100},
                {"eval_count", p.output_tokens},
                {"eval_duration", 500}};
      if (path == "/api/generate")
        j["response"] = FullText(p);
      else
        j["message"] = {{"role", "assistant"}, {"content", FullText(p)}};
      return j;
    }
    default: {
      json message = {{"role", "assistant"}, {"content", FullText(p)}};
      return {{"id", p.id},
              {"object", "chat.completion"},
              {"created", std::stoll(Now())},
              {"model", p.model},
              {"choices",
               json::array({{{"index", 0}, {"message", message}, {"finish_reason", "stop"}}})},
              {"usage", OpenAIUsage(p)}};
    }
  }
}

// Paces every slow stream on one thread: a stream waiting for its next token is an
// entry in a queue ordered by due time, not a sleeping thread. (A thread per stream
// made 2,000 streams 2,000 threads waking 20,000 times a second, which starved the
// other processes of the benchmark, the proxy under test and Redis, of CPU.)
class Pacer {
 public:
  Pacer() : thread_([this] { Loop(); }) {}
  ~Pacer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
    while (!queue_.empty()) {
      Finish(queue_.top().second, false);
      queue_.pop();
    }
  }

  // Takes over a stream whose head was sent.
  void Add(ResponseWriter::Detached client, std::unique_ptr<StreamWriter> writer) {
    auto* p = new Paced{std::move(client), std::move(writer)};
    p->step = p->writer->Next();
    {
      std::lock_guard lock(mu_);
      queue_.push({Clock::now() + std::chrono::milliseconds(p->step.delay_ms), p});
    }
    wake_.notify_one();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Paced {
    ResponseWriter::Detached client;
    std::unique_ptr<StreamWriter> writer;
    Step step;           // due next
    std::string unsent;  // of the step being written
    bool ending = false;
  };
  using Due = std::pair<Clock::time_point, Paced*>;
  struct Later {
    bool operator()(const Due& a, const Due& b) const { return a.first > b.first; }
  };

  void Loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (queue_.empty()) {
        wake_.wait(lock);
        continue;
      }
      Clock::time_point now = Clock::now();
      Clock::time_point first = queue_.top().first;  // a copy: Add() may move the queue
      if (first > now) {
        wake_.wait_until(lock, first);
        continue;
      }
      std::vector<Paced*> due;
      while (!queue_.empty() && queue_.top().first <= now) {
        due.push_back(queue_.top().second);
        queue_.pop();
      }
      lock.unlock();
      std::vector<Due> again;
      for (Paced* p : due) {
        Clock::time_point next;
        if (Advance(p, now, &next)) again.push_back({next, p});
      }
      lock.lock();
      for (const Due& d : again) queue_.push(d);
    }
  }

  // Writes the step that is due; false once the stream is over.
  bool Advance(Paced* p, Clock::time_point now, Clock::time_point* next) {
    if (p->unsent.empty()) {
      const Step& step = p->step;
      if (step.then == Step::Then::kCut) return Finish(p, false);
      if (!step.bytes.empty()) p->unsent = ChunkFrame(step.bytes);
      if (step.then == Step::Then::kEnd) {
        p->unsent += kLastChunk;
        p->ending = true;
      }
    }
    while (!p->unsent.empty()) {
      ssize_t n =
          send(p->client.fd, p->unsent.data(), p->unsent.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        p->unsent.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        *next = now + std::chrono::milliseconds(1);  // a slow reader: try again shortly
        return true;
      } else {
        return Finish(p, false);
      }
    }
    if (p->ending) return Finish(p, true);
    p->step = p->writer->Next();
    *next = now + std::chrono::milliseconds(p->step.delay_ms);
    return true;
  }

  static bool Finish(Paced* p, bool complete) {
    p->client.finish(complete);
    delete p;
    return false;
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::priority_queue<Due, std::vector<Due>, Later> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

const char* StreamType(Flavor f) {
  return f == Flavor::kOllamaNative ? "application/x-ndjson" : "text/event-stream";
}

}  // namespace

SimServer::SimServer(SimOptions options)
    : server_(std::make_unique<EventServer>(ServerTuning{.worker_threads = options.worker_threads,
                                                         .max_body_bytes = 64 * 1024 * 1024})) {
  auto log = std::make_shared<RequestLog>(options.remembered_requests);
  auto counter = std::make_shared<std::atomic<long>>(0);
  auto next_id = [counter] { return std::to_string(++*counter); };

  auto pacer = std::make_shared<Pacer>();
  auto completion = [log, next_id, options, pacer](Flavor fixed, bool by_model) {
    return [log, fixed, by_model, next_id, options, pacer](
               const httplib::Request& req, httplib::Response& res, ResponseWriter& out) {
      log->Remember(req);
      Flavor flavor = fixed;
      json body;
      try {
        body = json::parse(req.body);
      } catch (...) {
        return SendError(res, flavor, 400, "body is not valid JSON");
      }
      if (!body.is_object() || !body.contains("model") || !body["model"].is_string()) {
        return SendError(res, flavor, 400, "model is required");
      }
      Plan p;
      p.model = body["model"].get<std::string>();
      if (by_model) {
        flavor = IsMistralModel(p.model)             ? Flavor::kMistral
                 : p.model.rfind("deepseek", 0) == 0 ? Flavor::kDeepSeek
                                                     : Flavor::kOllamaOpenAI;
      }
      p.flavor = flavor;
      if (req.has_header("x-sim-error")) {
        int status = static_cast<int>(HeaderInt(req, "x-sim-error", 500));
        return SendError(res, flavor, status, "simulated error " + std::to_string(status));
      }
      if (flavor == Flavor::kMistral && body.contains("stream_options")) {
        // What Mistral really answers (PROVIDERS.md 2.3).
        res.status = 422;
        json detail = {
            {"detail", json::array({{{"type", "extra_forbidden"},
                                     {"loc", {"body", "stream_options", "include_usage"}},
                                     {"msg", "Extra inputs are not permitted"}}})}};
        res.set_content(json{{"object", "error"},
                             {"message", detail},
                             {"type", "invalid_request_error"},
                             {"param", nullptr},
                             {"code", nullptr}}
                            .dump(),
                        "application/json");
        return;
      }
      if (flavor == Flavor::kAnthropic && !body.contains("max_tokens")) {
        return SendError(res, flavor, 400, "max_tokens: Field required");
      }
      p.stream = flavor == Flavor::kOllamaNative ? body.value("stream", true)
                                                 : body.value("stream", false);
      p.include_usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                        body["stream_options"].value("include_usage", false);
      p.input_tokens = Ceil4(TextChars(body));
      int64_t wanted = HeaderInt(req, "x-sim-output-tokens", options.default_output_tokens);
      int64_t cap = -1;
      for (const char* key : {"max_tokens", "max_completion_tokens"}) {
        if (body.contains(key) && body[key].is_number_integer()) cap = body[key].get<int64_t>();
      }
      if (body.contains("options") && body["options"].is_object() &&
          body["options"].contains("num_predict") &&
          body["options"]["num_predict"].is_number_integer() &&
          body["options"]["num_predict"].get<int64_t>() >= 0)
        cap = body["options"]["num_predict"].get<int64_t>();
      p.output_tokens = cap >= 0 ? std::min(wanted, cap) : wanted;
      p.cache_read = HeaderInt(req, "x-sim-cache-read", 0);
      p.cache_write = HeaderInt(req, "x-sim-cache-write", 0);
      p.cache_write_1h = HeaderInt(req, "x-sim-cache-write-1h", 0);
      p.reasoning = HeaderInt(req, "x-sim-reasoning", 0);
      p.delay_ms = static_cast<int>(HeaderInt(req, "x-sim-token-delay-ms", options.token_delay_ms));
      p.cut_after = static_cast<int>(HeaderInt(req, "x-sim-cut-after", -1));
      p.stream_error_after = static_cast<int>(HeaderInt(req, "x-sim-stream-error", -1));
      p.keepalives = static_cast<int>(HeaderInt(req, "x-sim-keepalive", 0));
      p.id = (flavor == Flavor::kAnthropic ? "msg_sim" : "cmpl-sim") + next_id();

      if (flavor == Flavor::kAnthropic) res.set_header("request-id", "req_sim" + p.id);
      if (flavor == Flavor::kMistral)
        res.set_header("x-ratelimitbysize-remaining-minute", "499000");
      if (flavor == Flavor::kAnthropic)
        res.set_header("anthropic-ratelimit-requests-remaining", "999");
      if (!p.stream) {
        if (p.keepalives > 0) {
          // DeepSeek sends blank lines ahead of a slow non-streamed answer.
          std::string pad(static_cast<size_t>(p.keepalives), '\n');
          res.set_content(pad + NonStreamBody(p, req.path).dump(), "application/json");
        } else {
          res.set_content(NonStreamBody(p, req.path).dump(), "application/json");
        }
        return;
      }
      if (p.delay_ms > 0) {
        httplib::Headers headers = res.headers;
        headers.emplace("Content-Type", StreamType(flavor));
        out.Begin(200, headers);
        pacer->Add(out.Detach(), std::make_unique<StreamWriter>(p));
        return;
      }
      auto writer = std::make_shared<StreamWriter>(p);
      res.set_chunked_content_provider(
          StreamType(flavor),
          [writer](size_t, httplib::DataSink& sink) { return writer->Run(sink); });
    };
  };

  auto embeddings = [log](Flavor flavor) {
    return [log, flavor](const httplib::Request& req, httplib::Response& res) {
      log->Remember(req);
      json body;
      try {
        body = json::parse(req.body);
      } catch (...) {
        return SendError(res, flavor, 400, "body is not valid JSON");
      }
      if (!body.is_object() || !body.contains("model"))
        return SendError(res, flavor, 400, "model is required");
      if (req.has_header("x-sim-error")) {
        int status = static_cast<int>(HeaderInt(req, "x-sim-error", 500));
        return SendError(res, flavor, status, "simulated error " + std::to_string(status));
      }
      int64_t tokens = Ceil4(TextChars(body));
      json vector = json::array({0.1, 0.2, 0.3});
      if (flavor == Flavor::kOllamaNative) {
        res.set_content(json{{"model", body["model"]},
                             {"embeddings", json::array({vector})},
                             {"prompt_eval_count", tokens},
                             {"total_duration", 1000}}
                            .dump(),
                        "application/json");
      } else {
        res.set_content(
            json{{"id", "emb-sim"},
                 {"object", "list"},
                 {"model", body["model"]},
                 {"data",
                  json::array({{{"object", "embedding"}, {"embedding", vector}, {"index", 0}}})},
                 {"usage",
                  {{"prompt_tokens", tokens}, {"total_tokens", tokens}, {"completion_tokens", 0}}}}
                .dump(),
            "application/json");
      }
    };
  };

  server_->Streaming("POST", "/v1/messages", completion(Flavor::kAnthropic, false));
  server_->Post(
      "/v1/messages/count_tokens", [log](const httplib::Request& req, httplib::Response& res) {
        log->Remember(req);
        json body;
        try {
          body = json::parse(req.body);
        } catch (...) {
          return SendError(res, Flavor::kAnthropic, 400, "body is not valid JSON");
        }
        res.set_content(json{{"input_tokens", Ceil4(TextChars(body))}}.dump(), "application/json");
      });
  server_->Streaming("POST", "/v1/chat/completions", completion(Flavor::kOllamaOpenAI, true));
  server_->Streaming("POST", "/chat/completions", completion(Flavor::kDeepSeek, false));
  server_->Streaming("POST", "/v1/fim/completions", completion(Flavor::kMistral, false));
  server_->Post("/v1/embeddings", embeddings(Flavor::kMistral));
  server_->Streaming("POST", "/api/chat", completion(Flavor::kOllamaNative, false));
  server_->Streaming("POST", "/api/generate", completion(Flavor::kOllamaNative, false));
  server_->Post("/api/embed", embeddings(Flavor::kOllamaNative));
  server_->Get("/api/tags", [log](const httplib::Request& req, httplib::Response& res) {
    log->Remember(req);
    res.set_content(json{{"models", json::array({{{"name", "llama3.2:latest"},
                                                  {"model", "llama3.2:latest"},
                                                  {"size", 2019393189}}})}}
                        .dump(),
                    "application/json");
  });
  auto models = [log](const httplib::Request& req, httplib::Response& res) {
    log->Remember(req);
    json data = json::array();
    for (const char* id :
         {"mistral-small-latest", "claude-sonnet-4-5", "deepseek-chat", "llama3.2"}) {
      data.push_back({{"id", id}, {"object", "model"}, {"type", "model"}, {"owned_by", "sim"}});
    }
    res.set_content(json{{"object", "list"}, {"data", data}, {"has_more", false}}.dump(),
                    "application/json");
  };
  server_->Get("/v1/models", models);
  server_->Get("/models", models);
  server_->Get("/_sim/requests", [log](const httplib::Request&, httplib::Response& res) {
    res.set_content(log->Recent().dump(), "application/json");
  });
  server_->Delete("/_sim/requests", [log](const httplib::Request&, httplib::Response& res) {
    log->Clear();
    res.status = 204;
  });
}

void RequestLog::Clear() {
  std::lock_guard lock(mu_);
  recent_.clear();
}

void RequestLog::Remember(const httplib::Request& req) {
  json headers = json::object();
  for (const auto& [name, value] : req.headers) {
    if (name.rfind("x-sim-", 0) == 0 || name == "Authorization" || name == "authorization" ||
        name == "x-api-key" || name == "anthropic-version" || name == "X-Tollgate-User" ||
        name == "x-tollgate-user") {
      headers[name] = value;
    }
  }
  std::lock_guard lock(mu_);
  recent_.push_back({{"method", req.method},
                     {"path", req.path},
                     {"target", req.target},
                     {"headers", headers},
                     {"body", req.body}});
  while (recent_.size() > capacity_) recent_.pop_front();
}

json RequestLog::Recent() {
  std::lock_guard lock(mu_);
  return json(recent_);
}

}  // namespace tollgate::sim
