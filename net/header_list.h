// Header fields as a flat list in the order they came, for the proxy's client side:
// the request it sends upstream and the head of the answer it reads. Names compare
// ASCII case-insensitively, byte by byte in place. httplib::Headers, a multimap whose
// comparator calls ::tolower twice per byte, stays for the server side (handlers take
// httplib::Request); on the client side a request's few fields were searched and sorted
// for nothing (measured: ~9,000 instructions per proxied request, see bench/RESULTS.md).
#pragma once

#include <algorithm>
#include <array>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate {

// RFC 9110 tchar, by table: every byte of every header name is looked up.
inline constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 'a' + 'A'] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();
inline bool IsTokenChar(char c) { return kTokenChars[static_cast<unsigned char>(c)]; }
inline bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}
// Field values may hold visible characters, spaces, tabs and obs-text; never CR, LF, NUL
// or another control character.
inline bool IsFieldValue(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

// ASCII case-insensitive equality (header names are ASCII tokens).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
// Whether `name` equals one of `names`, ASCII case-insensitively.
bool IsOneOf(std::string_view name, std::initializer_list<std::string_view> names);

class HeaderList {
 public:
  using Field = std::pair<std::string, std::string>;

  HeaderList() = default;
  HeaderList(std::initializer_list<Field> fields) : fields_(fields) {}

  void Reserve(size_t fields) { fields_.reserve(fields); }
  void Add(std::string name, std::string value) {
    fields_.emplace_back(std::move(name), std::move(value));
  }
  // The value of the first field named `name`; null when there is none.
  const std::string* Find(std::string_view name) const;
  size_t Count(std::string_view name) const;
  // Removes every field named `name`; how many there were.
  size_t Erase(std::string_view name);

  // The fields, moved out; the list is left empty.
  std::vector<Field> Release() { return std::exchange(fields_, {}); }

  std::vector<Field>::const_iterator begin() const { return fields_.begin(); }
  std::vector<Field>::const_iterator end() const { return fields_.end(); }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }

 private:
  std::vector<Field> fields_;
};

}  // namespace tollgate
