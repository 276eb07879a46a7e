// What an action's special output lines mean, and what of them may be logged.
#include "openjd/session_output.h"

#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

TEST(SessionOutputTest, ProgressStatusAndFailAreReadAndOrdinaryLinesPassAsTheyAre) {
  SessionOutput output(/*redacted_env_vars_extension=*/false);
  EXPECT_EQ(output.read("rendering frame 12", false).logged, "rendering frame 12");
  EXPECT_EQ(output.read("openjd_progress: 42.5", false).progress, 42.5);
  EXPECT_EQ(output.read("openjd_progress: 100", false).progress, 100.0);
  EXPECT_EQ(output.read("openjd_status: loading assets", false).status, "loading assets");
  EXPECT_EQ(output.read("openjd_fail: licence server down", false).failure, "licence server down");
  // A progress that is not 0..100 is said, not taken, and fails nothing.
  for (const char* bad : {"openjd_progress: 101", "openjd_progress: -1", "openjd_progress: half",
                          "openjd_progress: nan"}) {
    const OutputLine line = output.read(bad, false);
    EXPECT_FALSE(line.progress) << bad;
    EXPECT_FALSE(line.fails_action) << bad;
    EXPECT_EQ(line.logged, std::string(bad) + " -- ERROR: progress must be a number from 0 to 100");
  }
  // Without the space, or with nothing after it, a line is ordinary text.
  EXPECT_FALSE(output.read("openjd_progress:50", false).progress);
  EXPECT_FALSE(output.read("openjd_status: ", false).status);
}

TEST(SessionOutputTest, EnvLinesOfAnEnterActionSetAndUnsetAndOthersChangeNothing) {
  SessionOutput output(false);
  const OutputLine set = output.read("openjd_env: RENDER_THREADS=8", true);
  ASSERT_TRUE(set.env);
  EXPECT_EQ(set.env->name, "RENDER_THREADS");
  EXPECT_EQ(set.env->value, "8");
  EXPECT_EQ(set.logged, "openjd_env: RENDER_THREADS=8");
  const OutputLine empty = output.read("openjd_env: EMPTY=", true);
  ASSERT_TRUE(empty.env);
  EXPECT_EQ(empty.env->value, "");
  const OutputLine json = output.read(R"(openjd_env: "MULTI=a\nb")", true);
  ASSERT_TRUE(json.env);
  EXPECT_EQ(json.env->value, "a\nb");
  const OutputLine unset = output.read("openjd_unset_env: HOME", true);
  ASSERT_TRUE(unset.env);
  EXPECT_EQ(unset.env->name, "HOME");
  EXPECT_FALSE(unset.env->value);
  // Only an environment's onEnter may change the session's environment.
  EXPECT_FALSE(output.read("openjd_env: LATE=1", false).env);
  EXPECT_FALSE(output.read("openjd_unset_env: LATE", false).env);
}

TEST(SessionOutputTest, AMalformedEnvCommandFailsTheActionWithWhy) {
  SessionOutput output(false);
  for (const char* bad : {"openjd_env: 1BAD=x", "openjd_env: NOEQUALS", "openjd_unset_env: A-B",
                          "openjd_env:X=1", "OPENJD_ENV: X=1", "  openjd_env: X=1"}) {
    const OutputLine line = output.read(bad, true);
    EXPECT_TRUE(line.fails_action) << bad;
    EXPECT_FALSE(line.env) << bad;
    EXPECT_NE(line.logged.find(" -- ERROR: "), std::string::npos) << line.logged;
  }
}

TEST(SessionOutputTest, UnsetWinsOverASetOfTheSameEnvironment) {
  const auto settled = SessionOutput::settle(
      {{"A", "1"}, {"B", "2"}, {"A", std::nullopt}, {"A", "3"}, {"B", "4"}, {"C", std::nullopt}});
  ASSERT_EQ(settled.size(), 3u);
  EXPECT_EQ(settled[0].name, "A");
  EXPECT_FALSE(settled[0].value);
  EXPECT_EQ(settled[1].name, "B");
  EXPECT_EQ(settled[1].value, "4");
  EXPECT_EQ(settled[2].name, "C");
  EXPECT_FALSE(settled[2].value);
}

TEST(SessionOutputTest, ARedactedValueIsNeverLoggedAgainAndIsSetOnlyWithTheExtension) {
  SessionOutput with(/*redacted_env_vars_extension=*/true);
  const OutputLine secret = with.read("openjd_redacted_env: TOKEN=hunter2", true);
  EXPECT_EQ(secret.logged, "openjd_redacted_env: TOKEN=********");
  ASSERT_TRUE(secret.env);
  EXPECT_EQ(secret.env->value, "hunter2");
  EXPECT_EQ(with.read("token is hunter2, again hunter2", false).logged,
            "token is ********, again ********");
  EXPECT_EQ(with.redact("login failed for hunter2"), "login failed for ********");

  // Without the extension the value is hidden all the same, but not set.
  SessionOutput without(false);
  const OutputLine hidden = without.read("openjd_redacted_env: SECRET_VAR=secret_value_xyz", true);
  EXPECT_EQ(hidden.logged, "openjd_redacted_env: SECRET_VAR=********");
  EXPECT_FALSE(hidden.env);
  EXPECT_EQ(without.read("LEAK:secret_value_xyz", false).logged, "LEAK:********");
}

TEST(SessionOutputTest, OverlappingAndMultiLineSecretsLeaveNothingOfThemselves) {
  SessionOutput output(true);
  output.read("openjd_redacted_env: A=abcdef", true);
  output.read("openjd_redacted_env: B=defghi", true);
  // Overlapping occurrences are one span, marked once.
  EXPECT_EQ(output.read("x abcdefghi y", false).logged, "x ******** y");
  output.read(R"(openjd_redacted_env: "KEY=-----BEGIN\nmiddle-line\n-----END")", true);
  EXPECT_EQ(output.read("key: -----BEGIN", false).logged, "key: ********");
  EXPECT_EQ(output.read("middle-line", false).logged, "********");
  EXPECT_EQ(output.read("-----END of key", false).logged, "******** of key");
  // A malformed redacted line still hides what it tried to set.
  const OutputLine bad = output.read("openjd_redacted_env: 9X=s3cr3t", true);
  EXPECT_TRUE(bad.fails_action);
  EXPECT_EQ(bad.logged.find("s3cr3t"), std::string::npos) << bad.logged;
  EXPECT_EQ(output.read("s3cr3t", false).logged, "********");
}

}  // namespace
}  // namespace farmhand::openjd
