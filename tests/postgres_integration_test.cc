#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "budget/counters.h"
#include "budget/keys.h"
#include "budget/ledger.h"
#include "budget/migrations.h"
#include "budget/pg_directory.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

using namespace std::chrono_literals;

class PostgresIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = testing::FreshDatabase();
    ASSERT_FALSE(url_.empty());
    pool_ = std::make_unique<PgPool>(url_, 4);
  }
  void MigrateOrFail() {
    int applied = 0;
    Status s = Migrate(*pool_, &applied);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  std::string url_;
  std::unique_ptr<PgPool> pool_;
  Timestamp now_ = Timestamp(1'795'000'000'000'000us);
};

TEST_F(PostgresIntegration, MigrationsApplyOnceAndAgainDoNothing) {
  int applied = -1;
  ASSERT_TRUE(Migrate(*pool_, &applied).ok());
  EXPECT_EQ(applied, LatestSchemaVersion());
  ASSERT_TRUE(Migrate(*pool_, &applied).ok());
  EXPECT_EQ(applied, 0);
  pqxx::connection c(url_);
  pqxx::nontransaction w(c);
  for (const char* table :
       {"users", "api_keys", "budget_settings", "usage_ledger", "budget_reset_log",
        "pricing_overrides", "alert_events", "settings_audit"}) {
    EXPECT_EQ(w.exec_params1("SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
                             table)[0]
                  .as<int>(),
              1)
        << table;
  }
}

TEST_F(PostgresIntegration, ConcurrentMigratorsApplyEachMigrationOnce) {
  PgPool other(url_, 1);
  int a = 0, b = 0;
  Status sa, sb;
  std::thread t1([&] { sa = Migrate(*pool_, &a); });
  std::thread t2([&] { sb = Migrate(other, &b); });
  t1.join();
  t2.join();
  ASSERT_TRUE(sa.ok()) << sa.message();
  ASSERT_TRUE(sb.ok()) << sb.message();
  EXPECT_EQ(a + b, LatestSchemaVersion());
}

UsageRecord LedgerRow(std::string request_id, int64_t user, Timestamp at, int64_t cost_nanos) {
  UsageRecord r;
  r.request_id = std::move(request_id);
  r.user_id = user;
  r.provider = "mistral";
  r.model = "m";
  r.price_id = "p";
  r.started_at = at;
  r.cost = Money::FromNanos(cost_nanos);
  return r;
}

TEST_F(PostgresIntegration, LedgerRequestIdIsUniqueAndCostsAreBigint) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  auto u = dir.CreateUser({.name = "ledger"}, BudgetDefaults{}, now_);
  ASSERT_TRUE(u.ok());
  auto insert = [&](int64_t cost) {
    return pool_->Run([&](pqxx::connection& c) {
      pqxx::work w(c);
      w.exec_params(
          "INSERT INTO usage_ledger (request_id, user_id, provider, model, started_at, cost_nanos, "
          "status)"
          " VALUES ('r1', $1, 'mistral', 'm', now(), $2, 200)",
          u->id, cost);
      w.commit();
    });
  };
  ASSERT_TRUE(insert(9'000'000'000'000'000'000).ok());
  EXPECT_EQ(insert(1).code(), Status::Code::kConflict);
}

TEST_F(PostgresIntegration, LedgerGathersRowsIntoFullBatches) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  int64_t user = dir.CreateUser({.name = "gather"}, BudgetDefaults{}, now_)->id;
  Metrics metrics;
  // A long linger: only a full batch, a Flush() or the shutdown may end it early. Flush()
  // and the shutdown are checked to return long before it (they would otherwise take it
  // whole and still write every row).
  constexpr auto kLinger = std::chrono::minutes(2);
  auto ledger =
      std::make_unique<PgLedger>(*pool_, metrics, nullptr, LedgerOptions{.linger = kLinger});
  auto quick = [&](const std::function<void()>& step) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    return std::chrono::steady_clock::now() - t0 < kLinger / 2;
  };
  auto row = [&](int i) { return LedgerRow("gather-" + std::to_string(i), user, now_, i); };
  for (size_t i = 0; i < 2 * PgLedger::kBatchRows; ++i) ledger->Append(row(static_cast<int>(i)));
  ledger->Flush();
  EXPECT_EQ(metrics.Get(Counter::kLedgerRowsWritten), 2 * PgLedger::kBatchRows);
  EXPECT_EQ(metrics.Get(Counter::kLedgerBatchesWritten), 2u) << "two full batches, no more";
  for (int i = 0; i < 3; ++i) ledger->Append(row(5000 + i));
  EXPECT_TRUE(quick([&] { ledger->Flush(); })) << "Flush() waited out the linger";
  EXPECT_EQ(metrics.Get(Counter::kLedgerBatchesWritten), 3u);
  ledger->Append(row(9000));
  EXPECT_TRUE(quick([&] { ledger.reset(); })) << "the shutdown waited out the linger";
  EXPECT_EQ(metrics.Get(Counter::kLedgerRowsWritten), 2 * PgLedger::kBatchRows + 4);
  auto spent = PgLedgerSums(*pool_).Sum(
      user, Window{now_ - std::chrono::hours(1), now_ + std::chrono::hours(1)}, true);
  ASSERT_TRUE(spent.ok());
  EXPECT_EQ(spent->nanos(), 999 * 1000 / 2 + 5000 + 5001 + 5002 + 9000);
}

TEST_F(PostgresIntegration, ALedgerBatchIsOneTransactionAcrossItsStatements) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  int64_t user = dir.CreateUser({.name = "atomic"}, BudgetDefaults{}, now_)->id;
  Metrics metrics;
  std::string spool = ::testing::TempDir() + "spool_" + RandomHex(4);
  size_t rows = PgLedger::kStatementRows + 5;
  {
    PgLedger ledger(*pool_, metrics, nullptr,
                    LedgerOptions{.spool_dir = spool, .linger = std::chrono::minutes(2)});
    // Rows for more than one statement; the last statement's last row breaks a CHECK.
    for (size_t i = 0; i < rows; ++i)
      ledger.Append(LedgerRow("atomic-" + std::to_string(i), user, now_, i + 1 == rows ? -1 : 1));
    ledger.Flush();
  }
  // The batch failed whole; then each row went alone, and only the bad one was refused.
  // Had the batch's first statement committed, its rows would have been found stored
  // (written again by none) rather than written one by one.
  EXPECT_GE(metrics.Get(Counter::kPostgresErrors), 2u);
  EXPECT_EQ(metrics.Get(Counter::kLedgerRowsWritten), rows - 1);
  EXPECT_EQ(metrics.Get(Counter::kLedgerRowsRejected), 1u);
  auto count = pool_->Get<int64_t>([&](pqxx::connection& c) {
    pqxx::read_transaction w(c);
    return w.exec_params1("SELECT count(*) FROM usage_ledger WHERE user_id = $1", user)[0]
        .as<int64_t>();
  });
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, static_cast<int64_t>(rows - 1));
  std::ifstream rejected(spool + "/rejected.log");
  std::string line;
  ASSERT_TRUE(std::getline(rejected, line)) << "the refused row is kept for a person";
  EXPECT_EQ(ParseSpoolLine(line)->request_id, "atomic-" + std::to_string(rows - 1));
  std::filesystem::remove_all(spool);
}

TEST_F(PostgresIntegration, LedgerBatchKeepsEveryFieldWhateverTheText) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  int64_t user = dir.CreateUser({.name = "batch"}, BudgetDefaults{}, now_)->id;
  Metrics metrics;
  PgLedger ledger(*pool_, metrics, nullptr, {});
  // Text that means something to COPY, to array literals or to SQL.
  const std::vector<std::string> models = {"plain",
                                           "quote\"d",
                                           "back\\slash",
                                           "{brace},comma",
                                           "NULL",
                                           "",
                                           "caf\u00e9 \u2603",
                                           std::string("nul\0byte", 8),
                                           "tab\there",
                                           "new\nline\rcr",
                                           "\\N",
                                           "\\.",
                                           "back\\nslash-n"};
  auto request_id = [](size_t i) {
    return "odd-" + std::string(i < 10 ? "0" : "") + std::to_string(i);
  };
  for (size_t i = 0; i < models.size(); ++i) {
    UsageRecord r;
    r.request_id = request_id(i);
    r.user_id = user;
    r.key_id = i % 2 == 0 ? 0 : 40 + static_cast<int64_t>(i);
    r.provider = "mistral";
    r.model = models[i];
    r.price_id = "p\"" + std::to_string(i);
    r.started_at = now_ + std::chrono::microseconds(i);
    r.usage = {.input_tokens = 10 + static_cast<int64_t>(i),
               .output_tokens = 20,
               .cache_read_tokens = 3,
               .cache_write_5m_tokens = 4,
               .cache_write_1h_tokens = 5,
               .reasoning_tokens = 6};
    r.cost = Money::FromNanos(9'000'000'000'000'000'000 + static_cast<int64_t>(i));
    r.status = 200;
    r.streamed = i % 2 == 1;
    r.estimated = i % 3 == 0;
    r.latency_ms = 7;
    ledger.Append(r);
  }
  ledger.Append([&] {  // a duplicate request id in the same batch is written once
    UsageRecord r;
    r.request_id = request_id(0);
    r.user_id = user;
    r.started_at = now_;
    return r;
  }());
  ledger.Flush();
  pqxx::connection c(url_);
  auto rows = pqxx::nontransaction(c).exec(
      "SELECT model, price_id, input_tokens, cache_write_1h_tokens, cost_nanos, streamed,"
      " estimated, (extract(epoch from started_at) * 1000000)::bigint, key_id"
      " FROM usage_ledger ORDER BY request_id");
  ASSERT_EQ(rows.size(), models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    std::string expected = models[i];
    std::erase(expected, '\0');  // Postgres text has no NUL; it is dropped
    EXPECT_EQ(rows[i][0].as<std::string>(), expected) << i;
    EXPECT_EQ(rows[i][1].as<std::string>(), "p\"" + std::to_string(i));
    EXPECT_EQ(rows[i][2].as<int64_t>(), 10 + static_cast<int64_t>(i));
    EXPECT_EQ(rows[i][3].as<int64_t>(), 5);
    EXPECT_EQ(rows[i][4].as<int64_t>(), 9'000'000'000'000'000'000 + static_cast<int64_t>(i));
    EXPECT_EQ(rows[i][5].as<bool>(), i % 2 == 1);
    EXPECT_EQ(rows[i][6].as<bool>(), i % 3 == 0);
    EXPECT_EQ(rows[i][7].as<int64_t>(), Micros(now_) + static_cast<int64_t>(i));
    if (i % 2 == 0) {
      EXPECT_TRUE(rows[i][8].is_null()) << "key id 0 is stored as NULL";
    } else {
      EXPECT_EQ(rows[i][8].as<int64_t>(), 40 + static_cast<int64_t>(i));
    }
  }
}

TEST_F(PostgresIntegration, DirectoryRoundTrip) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  BudgetDefaults defaults;
  defaults.limit = Money::FromNanos(30'000'000'000);
  auto alice =
      dir.CreateUser({.name = "alice", .email = "a@x", .external_id = "ext-1"}, defaults, now_);
  ASSERT_TRUE(alice.ok()) << alice.status().message();
  EXPECT_EQ(dir.CreateUser({.name = "alice"}, defaults, now_).status().code(),
            Status::Code::kConflict);

  EXPECT_EQ(dir.FindUser("alice")->id, alice->id);
  EXPECT_EQ(dir.FindUser(std::to_string(alice->id))->name, "alice");
  EXPECT_EQ(dir.FindUser("ext-1")->id, alice->id);
  EXPECT_EQ(dir.FindUser("bob").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(dir.FindUser("x' OR '1'='1").status().code(), Status::Code::kNotFound);

  auto settings = dir.GetSettings(alice->id);
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->limit.nanos(), 30'000'000'000);
  EXPECT_EQ(settings->period_anchor, now_);

  auto key = dir.CreateKey(alice->id, "laptop", true, now_ + 3600s, now_);
  ASSERT_TRUE(key.ok()) << key.status().message();
  auto found = dir.FindKeyByHash(HashKey(key->secret));
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->user_id, alice->id);
  EXPECT_TRUE(found->act_as_user);
  EXPECT_TRUE(found->UsableAt(now_));
  EXPECT_FALSE(found->UsableAt(now_ + 3600s));
  {
    // The secret itself is nowhere in the database.
    pqxx::connection c(url_);
    pqxx::nontransaction w(c);
    EXPECT_EQ(w.exec_params1(
                   "SELECT count(*) FROM api_keys WHERE key_hash = $1 OR prefix = $1 OR name = $1",
                   key->secret)[0]
                  .as<int>(),
              0);
  }
  ASSERT_TRUE(dir.RevokeKey(key->key.prefix, now_).ok());
  EXPECT_FALSE(dir.FindKeyByHash(HashKey(key->secret))->UsableAt(now_));
  EXPECT_EQ(dir.RevokeKey("tg-nothing", now_).code(), Status::Code::kNotFound);

  BudgetSettings changed = *settings;
  changed.limit = Money::FromNanos(5);
  changed.enforcement = Enforcement::kSoft;
  auto put = dir.PutSettings(changed, "admin:test");
  ASSERT_TRUE(put.ok()) << put.status().message();
  EXPECT_EQ(put->version, settings->version + 1);
  EXPECT_EQ(dir.GetSettings(alice->id)->enforcement, Enforcement::kSoft);

  auto reset =
      dir.ResetWindow(alice->id, "admin:test", "new quarter", Money::FromNanos(42), now_ + 60s);
  ASSERT_TRUE(reset.ok()) << reset.status().message();
  EXPECT_EQ(dir.GetSettings(alice->id)->period_anchor, now_ + 60s);
  auto log = dir.ResetLog(alice->id, 10);
  ASSERT_EQ(log->size(), 1u);
  EXPECT_EQ((*log)[0].reason, "new quarter");
  EXPECT_EQ((*log)[0].spend_before.nanos(), 42);

  pqxx::connection c(url_);
  pqxx::nontransaction w(c);
  EXPECT_EQ(w.exec_params1(
                 "SELECT count(*) FROM settings_audit WHERE user_id = $1 AND actor = 'admin:test'",
                 alice->id)[0]
                .as<int>(),
            1);
}

TEST_F(PostgresIntegration, BadSettingsAreRefusedByTheSchemaToo) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  auto u = dir.CreateUser({.name = "carol"}, BudgetDefaults{}, now_);
  BudgetSettings s = *dir.GetSettings(u->id);
  s.yellow = 90;
  s.orange = 80;
  EXPECT_FALSE(dir.PutSettings(s, "t").ok());
  EXPECT_EQ(dir.GetSettings(u->id)->yellow, 50);  // nothing half-written
}

TEST_F(PostgresIntegration, LedgerRowsSpooledDuringAnOutageAreWrittenLater) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  int64_t user = dir.CreateUser({.name = "spool"}, BudgetDefaults{}, now_)->id;
  std::string spool = ::testing::TempDir() + "spool_" + RandomHex(4);
  Metrics metrics;
  {
    PgPool down("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", 1);
    PgLedger ledger(down, metrics, nullptr, LedgerOptions{.spool_dir = spool});
    for (int i = 0; i < 3; ++i) {
      UsageRecord r;
      r.request_id = "spooled-" + std::to_string(i);
      r.user_id = user;
      r.provider = "anthropic";
      r.model = "claude-haiku-4-5";
      r.started_at = now_;
      r.usage.output_tokens = 10 + i;
      r.cost = Money::FromNanos(1000 + i);
      r.status = 200;
      ledger.Append(r);
    }
    EXPECT_FALSE(ledger.Stop(std::chrono::milliseconds(0)))
        << "rows are left behind, in the spool";
  }  // the process "dies" here with Postgres still down
  auto files = [&] {
    return std::distance(std::filesystem::directory_iterator(spool),
                         std::filesystem::directory_iterator());
  };
  EXPECT_EQ(files(), 1);
  PgLedger recovered(*pool_, metrics, nullptr,
                     LedgerOptions{.spool_dir = spool});  // replays what it finds
  auto rows = [&] {
    pqxx::connection c(url_);
    return pqxx::nontransaction(c).exec1(
        "SELECT count(*), coalesce(sum(cost_nanos), 0) FROM usage_ledger");
  };
  for (int i = 0; i < 200 && rows()[0].as<int>() < 3; ++i)
    std::this_thread::sleep_for(50ms);  // bounded wait
  EXPECT_EQ(rows()[0].as<int>(), 3);
  EXPECT_EQ(rows()[1].as<int64_t>(), 1000 + 1001 + 1002);
  for (int i = 0; i < 200 && files() > 1; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(files(), 1) << "the replayed spool file is removed; the recovered one's own stays";
}

// A batch whose commit went through but whose answer was lost is spooled and replayed:
// the rows already stored are skipped, the others written, none twice.
TEST_F(PostgresIntegration, ReplayingRowsAlreadyStoredWritesOnlyTheOthers) {
  MigrateOrFail();
  PgDirectory dir(*pool_);
  int64_t user = dir.CreateUser({.name = "replay"}, BudgetDefaults{}, now_)->id;
  Metrics metrics;
  std::vector<UsageRecord> rows;
  for (int i = 0; i < 5; ++i)
    rows.push_back(LedgerRow("replay-" + std::to_string(i), user, now_, 100 + i));
  {
    PgLedger ledger(*pool_, metrics, nullptr, {});
    ledger.Append(rows[1]);
    ledger.Append(rows[3]);
  }
  std::string spool = ::testing::TempDir() + "spool_" + RandomHex(4);
  std::filesystem::create_directories(spool);
  {
    std::ofstream out(spool + "/ledger-lost-answer.wal");
    for (const UsageRecord& r : rows) {
      std::string line;
      AppendSpoolLine(line, r);
      out << line << "\n";
    }
  }
  auto files = [&] {
    return std::distance(std::filesystem::directory_iterator(spool),
                         std::filesystem::directory_iterator());
  };
  PgLedger recovered(*pool_, metrics, nullptr,
                     LedgerOptions{.spool_dir = spool});  // replays what it finds
  for (int i = 0; i < 200 && files() > 1; ++i)
    std::this_thread::sleep_for(50ms);  // bounded wait for the writer thread
  pqxx::connection c(url_);
  auto got = pqxx::nontransaction(c).exec1(
      "SELECT count(*), count(DISTINCT request_id), sum(cost_nanos) FROM usage_ledger");
  EXPECT_EQ(got[0].as<int>(), 5);
  EXPECT_EQ(got[1].as<int>(), 5);
  EXPECT_EQ(got[2].as<int64_t>(), 100 + 101 + 102 + 103 + 104);
  EXPECT_EQ(files(), 1) << "the replayed spool file is removed; the recovered one's own stays";
  std::filesystem::remove_all(spool);
}

// The ledger and the counters on a real Postgres and Redis (docs/ARCHITECTURE.md,
// "Money"): a committed batch reaches the counters once, a counter built while a batch
// is pending leaves it out and takes it when it is applied, and a batch whose writer
// died is applied by another.
class LedgerAndCounters : public PostgresIntegration {
 protected:
  void SetUp() override {
    PostgresIntegration::SetUp();
    MigrateOrFail();
    redis_ = testing::TestRedis(0, 8);
    ASSERT_TRUE(redis_);
    PgDirectory dir(*pool_);
    user_ = dir.CreateUser({.name = "money"}, BudgetDefaults{}, now_)->id;
    // Users of other tests' databases may share the id: this test's keys start clean.
    std::vector<std::string> del = RedisCounters::HoldKeys(user_);
    del.insert(del.begin(), {"DEL", RedisCounters::SpendKey(user_, window_.start)});
    redis_->Command(del);
    sums_ = std::make_unique<PgLedgerSums>(*pool_);
    counters_ = std::make_unique<RedisCounters>(*redis_, *sums_, clock_, metrics_, 0ms);
  }
  UsageRecord Row(const std::string& id, int64_t cost) {
    UsageRecord r = LedgerRow(id + "-" + RandomHex(4), user_, now_, cost);
    r.window = window_;
    return r;
  }
  int64_t Counter() {
    auto r = redis_->Command({"GET", RedisCounters::SpendKey(user_, window_.start)});
    return r->type == RedisReply::Type::kString ? std::stoll(r->str) : -1;
  }
  // A batch of one row committed with its pending row, as a writer leaves it between
  // its commit and its apply.
  void CommitWithoutApplying(const std::string& token, int64_t cost) {
    ASSERT_TRUE(pool_->Run([&](pqxx::connection& c) {
                       pqxx::work t(c);
                       testing::InsertLedgerRow(t, "row-" + token, user_, now_, cost,
                                                window_.start, token);
                       t.exec_params(
                           "INSERT INTO ledger_pending (token, deltas) VALUES ($1, $2)", token,
                           DeltasToJson({{user_, window_, Money::FromNanos(cost)}}));
                       t.commit();
                     }).ok());
  }
  // What a counter built while `token`'s batch was pending holds for it (0: nothing).
  int64_t PendingHold(const std::string& token) {
    auto r = redis_->Command({"HGET", RedisCounters::HoldKeys(user_)[2],
                              RedisCounters::PendingHoldId(token, window_.start)});
    return r->type == RedisReply::Type::kString ? std::stoll(r->str) : 0;
  }
  int64_t Pending() {
    pqxx::connection c(url_);
    return pqxx::nontransaction(c).exec1("SELECT count(*) FROM ledger_pending")[0].as<int64_t>();
  }
  // Tests run in parallel on one Redis, and their fresh databases all have user 1: a
  // window of each test's own keeps their counters apart.
  Window window_{Timestamp(1'794'000'000'000'000us +
                           std::chrono::seconds(std::stoll(RandomHex(2), nullptr, 16))),
                 Timestamp(1'796'000'000'000'000us)};
  ManualClock clock_{Timestamp(1'795'000'000'000'000us)};
  Metrics metrics_;
  std::unique_ptr<HiredisPool> redis_;
  std::unique_ptr<PgLedgerSums> sums_;
  std::unique_ptr<RedisCounters> counters_;
  int64_t user_ = 0;
};

TEST_F(LedgerAndCounters, ACommittedBatchReachesTheCounterOnceAndLeavesNothingPending) {
  PgLedger ledger(*pool_, metrics_, counters_.get(), {});
  for (int i = 0; i < 5; ++i) ledger.Append(Row("a", 1'000 + i));
  ledger.Flush();
  EXPECT_EQ(Counter(), 5'010) << "built at 0 on first use, then the batch added";
  EXPECT_EQ(Pending(), 0);
  // The same batch applied again (a retry after a lost answer) adds nothing.
  std::vector<CounterDelta> deltas = {{user_, window_, Money::FromNanos(5'010)}};
  std::string token = "retried-" + RandomHex(6);  // Redis outlives this test's database
  ASSERT_TRUE(counters_->Apply(token, deltas, nullptr).ok());
  ASSERT_TRUE(counters_->Apply(token, deltas, nullptr).ok());
  EXPECT_EQ(Counter(), 10'020);
}

TEST_F(LedgerAndCounters, ACounterBuiltWhileABatchIsPendingTakesItOnceWhenApplied) {
  // A batch committed, its pending row still there (its writer has not applied it yet).
  std::string token = "tok-" + RandomHex(6);  // Redis outlives this test's database
  CommitWithoutApplying(token, 700);
  PgLedger ledger(*pool_, metrics_, counters_.get(), {});
  ledger.Append(Row("b", 300));
  ledger.Flush();
  EXPECT_EQ(Counter(), 300) << "the pending batch is left out of the build";
  EXPECT_EQ(PendingHold(token), 700) << "and held until it is applied";
  ASSERT_TRUE(counters_->Apply(token, {{user_, window_, Money::FromNanos(700)}}, nullptr).ok());
  EXPECT_EQ(Counter(), 1'000) << "and counted when it is applied";
  EXPECT_EQ(PendingHold(token), 0) << "its hold released by the apply";
  EXPECT_EQ(sums_->Sum(user_, window_, true)->nanos(), Counter()) << "the counter is the ledger";
}

TEST_F(LedgerAndCounters, ABatchWhoseWriterDiedIsAppliedByAnotherOnce) {
  // Committed with its pending row, never applied: the writer is gone.
  std::string token = "gone-" + RandomHex(6);
  CommitWithoutApplying(token, 900);
  ASSERT_TRUE(counters_->Build(user_, window_).ok());
  EXPECT_EQ(Counter(), 0) << "built without the pending batch";
  EXPECT_EQ(PendingHold(token), 900) << "which is held meanwhile: no room is given twice";
  {
    PgLedger other(*pool_, metrics_, counters_.get(), {.orphan_batch_after = 0ms});
    for (int i = 0; i < 100 && Pending() > 0; ++i) std::this_thread::sleep_for(100ms);  // bounded
  }
  EXPECT_EQ(Pending(), 0);
  EXPECT_EQ(Counter(), 900);
  EXPECT_EQ(PendingHold(token), 0);
  PgLedger again(*pool_, metrics_, counters_.get(), {.orphan_batch_after = 0ms});
  again.Flush();
  EXPECT_EQ(Counter(), 900) << "applied once";
}

// Postgres holding the table: rows past the queue's bound wait in the spool only, and
// every one reaches the ledger (and the counter) once Postgres lets go.
TEST_F(LedgerAndCounters, RowsPastTheQueueBoundWaitInTheSpoolAndAllArrive) {
  std::string spool = ::testing::TempDir() + "spool_" + RandomHex(4);
  pqxx::connection blocker(url_);
  auto lock = std::make_unique<pqxx::work>(blocker);
  lock->exec("LOCK TABLE usage_ledger IN ACCESS EXCLUSIVE MODE");
  PgLedger ledger(*pool_, metrics_, counters_.get(),
                  {.spool_dir = spool, .max_queued_rows = 1'000});
  constexpr int kRows = 3'500;
  for (int i = 0; i < kRows; ++i) ledger.Append(Row("s", 1));
  EXPECT_LE(ledger.queued(), 1'000u + PgLedger::kBatchRows) << "memory is bounded";
  lock->abort();  // Postgres lets go
  lock.reset();
  ledger.Flush();
  EXPECT_EQ(sums_->Sum(user_, window_, true)->nanos(), kRows);
  EXPECT_EQ(Counter(), kRows);
  EXPECT_EQ(Pending(), 0);
  std::filesystem::remove_all(spool);
}

TEST(PostgresUnreachable, IsUnavailableNotAnException) {
  PgPool pool("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", 1);
  Status s = pool.Run([](pqxx::connection&) {});
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  PgDirectory dir(pool);
  EXPECT_EQ(dir.FindUser("x").status().code(), Status::Code::kUnavailable);
}

}  // namespace
}  // namespace tollgate
