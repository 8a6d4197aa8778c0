// A tiny self-contained test harness: TEST_CASE registers a function, CHECK* macros throw on
// failure, check::run() runs all cases (or those named on the command line) and returns the
// process exit status. No external framework.
#pragma once

#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

namespace check {

struct Case {
  const char* name;
  void (*fn)();
};

inline std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

struct Register {
  Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

struct Failure : std::exception {
  explicit Failure(std::string m) : message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string message;
};

[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::ostringstream s;
  s << file << ":" << line << ": " << what;
  throw Failure(s.str());
}

inline int run(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& c : registry()) std::printf("%s\n", c.name);
    return 0;
  }
  int failed = 0;
  int ran = 0;
  for (const auto& c : registry()) {
    bool selected = argc <= 1;
    for (int i = 1; i < argc; ++i) selected = selected || std::strcmp(argv[i], c.name) == 0;
    if (!selected) continue;
    ++ran;
    try {
      c.fn();
      std::printf("[ ok ] %s\n", c.name);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("[FAIL] %s\n       %s\n", c.name, e.what());
    }
    std::fflush(stdout);
  }
  if (ran == 0) {
    std::printf("no test case matched; --list shows them\n");
    return 2;
  }
  std::printf("%d/%d passed\n", ran - failed, ran);
  return failed == 0 ? 0 : 1;
}

}  // namespace check

#define TEST_CASE(name)                                          \
  static void name();                                            \
  static const ::check::Register name##_registration(#name, &name); \
  static void name()

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) ::check::fail(__FILE__, __LINE__, "CHECK(" #cond ") is false"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                     \
  do { /* copies: a reference into a temporary's member would dangle (f().back().x) */  \
    const auto check_a_ = (a);                                                             \
    const auto check_b_ = (b);                                                             \
    if (!(check_a_ == check_b_)) {                                                         \
      std::ostringstream check_m_;                                                         \
      check_m_ << "CHECK_EQ(" #a ", " #b "): " << check_a_ << " != " << check_b_;          \
      ::check::fail(__FILE__, __LINE__, check_m_.str());                                   \
    }                                                                                      \
  } while (0)

// Checks that `expr` throws `Type` whose what() contains `needle`.
#define CHECK_THROWS(expr, Type, needle)                                                         \
  do {                                                                                           \
    bool check_thrown_ = false;                                                                  \
    try {                                                                                        \
      (void)(expr);                                                                              \
    } catch (const Type& check_e_) {                                                             \
      check_thrown_ = true;                                                                      \
      if (std::string(check_e_.what()).find(needle) == std::string::npos) {                      \
        ::check::fail(__FILE__, __LINE__,                                                        \
                      std::string(#expr " threw " #Type " without '") + (needle) + "': " + check_e_.what()); \
      }                                                                                          \
    }                                                                                            \
    if (!check_thrown_) ::check::fail(__FILE__, __LINE__, #expr " did not throw " #Type);        \
  } while (0)
