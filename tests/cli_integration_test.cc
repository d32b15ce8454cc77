#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "budget/keys.h"
#include "tests/test_env.h"

namespace tollgate {
namespace {

// Drives the real `tollgate` binary against a real, fresh Postgres database.
class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::FreshDatabase();
    ASSERT_FALSE(db_.empty());
    binary_ = testing::TollgateBinary();
    config_ = testing::SourceDir() + "/config/tollgate.json";
  }
  testing::CommandResult Tg(const std::string& args) {
    return testing::Run("TOLLGATE_CONFIG='" + config_ + "' TOLLGATE_REDIS_URL='" +
                        testing::RequiredEnv("TOLLGATE_TEST_REDIS_URL") +
                        "' TOLLGATE_DATABASE_URL='" + db_ + "' '" +
                        binary_ + "' " + args);
  }
  static std::string LastLine(const std::string& out) {
    std::string s = out;
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s.substr(s.rfind('\n') + 1);
  }
  std::string db_, binary_, config_;
};

TEST_F(Cli, UserAndKeyRoundTrip) {
  auto m = Tg("migrate");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  EXPECT_EQ(m.output.rfind("applied ", 0), 0u) << m.output;
  EXPECT_EQ(m.output.find("applied 0 "), std::string::npos) << m.output;
  auto again = Tg("migrate");
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.output.rfind("applied 0 migration(s)", 0), 0u) << again.output;

  auto created =
      Tg("user create --name alice --email alice@example.com --external-id app-7 --limit 12.5");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  std::string id = LastLine(created.output);
  EXPECT_EQ(id.find_first_not_of("0123456789"), std::string::npos) << id;
  ASSERT_EQ(Tg("user create --name root --role admin").exit_code, 0);

  auto list = Tg("user list");
  EXPECT_NE(list.output.find("alice"), std::string::npos);
  EXPECT_NE(list.output.find("app-7"), std::string::npos);
  EXPECT_NE(list.output.find("admin"), std::string::npos);

  auto show = Tg("budget show --user alice");
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("$12.500000000"), std::string::npos) << show.output;
  EXPECT_NE(Tg("budget show --user root").output.find("$100.000000000"),
            std::string::npos);  // admin default

  auto key = Tg("key create --user app-7 --act-as-user --expires 2099-01-01");
  ASSERT_EQ(key.exit_code, 0) << key.output;
  std::string secret = LastLine(key.output);
  EXPECT_TRUE(LooksLikeTollgateKey(secret)) << secret;

  pqxx::connection c(db_);
  pqxx::nontransaction w(c);
  EXPECT_EQ(w.exec_params1("SELECT count(*) FROM api_keys WHERE key_hash = $1 AND act_as_user",
                           HashKey(secret))[0]
                .as<int>(),
            1);

  auto keys = Tg("key list --user alice");
  EXPECT_NE(keys.output.find(secret.substr(0, 12)), std::string::npos);
  EXPECT_EQ(keys.output.find(secret), std::string::npos) << "a secret must never be listed";
  EXPECT_NE(keys.output.find("active"), std::string::npos);

  ASSERT_EQ(Tg("key revoke --key " + secret.substr(0, 12)).exit_code, 0);
  EXPECT_NE(Tg("key list").output.find("revoked"), std::string::npos);
}

TEST_F(Cli, BudgetSetAndReset) {
  ASSERT_EQ(Tg("migrate").exit_code, 0);
  ASSERT_EQ(Tg("user create --name bob").exit_code, 0);
  auto set =
      Tg("budget set --user bob --limit 7 --period weekly --enforcement soft --timezone "
         "Europe/Berlin");
  ASSERT_EQ(set.exit_code, 0) << set.output;
  auto show = Tg("budget show --user bob").output;
  EXPECT_NE(show.find("$7.000000000"), std::string::npos) << show;
  EXPECT_NE(show.find("weekly"), std::string::npos);
  EXPECT_NE(show.find("soft"), std::string::npos);
  EXPECT_NE(show.find("Europe/Berlin"), std::string::npos);
  auto reset = Tg("budget reset --user bob --reason 'quarter start'");
  ASSERT_EQ(reset.exit_code, 0) << reset.output;
  pqxx::connection c(db_);
  pqxx::nontransaction w(c);
  EXPECT_EQ(w.exec1("SELECT reason FROM budget_reset_log")[0].as<std::string>(), "quarter start");
}

TEST_F(Cli, ErrorsExitNonZeroWithOneLine) {
  ASSERT_EQ(Tg("migrate").exit_code, 0);
  for (const char* args :
       {"user create", "user create --name x --limit abc", "user create --name x --role god",
        "budget set --user nobody --limit 1", "budget set --user x --timezone Nowhere/City",
        "key create --user nobody", "frobnicate", "user create --name x --bogus 1",
        "key revoke --key tg-unknown"}) {
    auto r = Tg(args);
    EXPECT_NE(r.exit_code, 0) << args;
    std::string out = r.output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 0) << args << ": " << r.output;
    EXPECT_EQ(out.rfind("tollgate: ", 0), 0u) << args << ": " << r.output;
  }
  ASSERT_EQ(Tg("user create --name dup").exit_code, 0);
  EXPECT_NE(Tg("user create --name dup").exit_code, 0);
}

TEST_F(Cli, EverySubcommandHasHelp) {
  for (const char* cmd :
       {"serve", "migrate", "user create", "user list", "key create", "key revoke", "key list",
        "budget show", "budget set", "budget reset", "pricing list"}) {
    auto r = Tg(std::string(cmd) + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.output.find(std::string("tollgate ") + cmd), std::string::npos) << r.output;
  }
}

TEST_F(Cli, PricingListShowsTheShippedTable) {
  auto r = Tg("pricing list");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("deepseek-flash"), std::string::npos);
  EXPECT_NE(r.output.find("peak 0.3/1.2"), std::string::npos);
  EXPECT_NE(r.output.find("alias mistral/mistral-large-latest -> mistral-large-2512"),
            std::string::npos);
}

TEST_F(Cli, InvalidConfigurationNamesTheField) {
  std::string path = ::testing::TempDir() + "bad_" + RandomHex(3) + ".json";
  std::ofstream(path) << R"({"gate": {"redis_down": "sometimes"}})";
  auto r = testing::Run("'" + binary_ + "' --config '" + path + "' user list");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("gate.redis_down"), std::string::npos) << r.output;
}

// `tollgate audit` compares a user's counter with the ledger; --repair corrects it.
TEST_F(Cli, AuditFindsACounterOffTheLedgerAndRepairsIt) {
  ASSERT_EQ(Tg("migrate").exit_code, 0);
  std::string id = LastLine(Tg("user create --name audited --limit 5").output);
  auto first = Tg("audit --user audited");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("no counter"), std::string::npos) << first.output;
  // The window start, as the audit prints it, for a row and a counter of that window.
  std::string line = LastLine(first.output);
  std::string window = line.substr(8, line.find(' ', 8) - 8);
  auto psql = [&](const std::string& sql) {
    return testing::Run("psql '" + db_ + "' -qAt -c \"" + sql + "\"");
  };
  ASSERT_EQ(psql("INSERT INTO usage_ledger (request_id, user_id, provider, model, price_id,"
                 " started_at, cost_nanos, status, window_start) VALUES ('audit-1', " +
                 id + ", 'p', 'm', 'x', now(), 4200, 200, '" + window + "')")
                .exit_code,
            0);
  auto micros = psql("SELECT (extract(epoch FROM timestamptz '" + window + "') * 1000000)::bigint");
  std::string key = "tg:{u:" + id + "}:spend:" + LastLine(micros.output);
  auto redis = testing::TestRedis(0, 1);
  ASSERT_TRUE(redis->Command({"SET", key, "1000", "EX", "600"}).ok());
  auto off = Tg("audit --user audited");
  EXPECT_EQ(off.exit_code, 1) << off.output;
  EXPECT_NE(off.output.find("DIFFERENT"), std::string::npos) << off.output;
  EXPECT_NE(off.output.find("-3200"), std::string::npos) << off.output;
  auto repaired = Tg("audit --user audited --repair");
  EXPECT_EQ(repaired.exit_code, 0) << repaired.output;
  EXPECT_NE(repaired.output.find("repaired"), std::string::npos) << repaired.output;
  EXPECT_EQ(redis->Command({"GET", key})->str, "4200");
  EXPECT_EQ(Tg("audit --user audited").exit_code, 0);
  redis->Command({"DEL", key});
}

}  // namespace
}  // namespace tollgate
