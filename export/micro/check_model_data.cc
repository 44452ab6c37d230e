// Standalone check of a generated model_data.cc (no TFLite Micro needed): writes the C array
// back out as a file so it can be compared byte for byte with the .tflite it came from, and
// checks what TFLM relies on: the TFL3 identifier, the length constant and 16-byte alignment.
//
//   g++ -std=c++17 -I MODEL_DIR check_model_data.cc MODEL_DIR/model_data.cc -o check_model_data
//   ./check_model_data roundtrip.tflite && cmp roundtrip.tflite MODEL.tflite
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "model_data.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.tflite\n", argv[0]);
    return 2;
  }
  if (g_model_data_len != kModelDataLen) {
    std::fprintf(stderr, "length mismatch: g_model_data_len %u, kModelDataLen %u\n", g_model_data_len, kModelDataLen);
    return 1;
  }
  if (reinterpret_cast<std::uintptr_t>(g_model_data) % 16 != 0) {
    std::fprintf(stderr, "g_model_data is not 16-byte aligned\n");
    return 1;
  }
  if (g_model_data_len < 8 || std::memcmp(g_model_data + 4, "TFL3", 4) != 0) {
    std::fprintf(stderr, "no TFL3 flatbuffer identifier at bytes 4..8\n");
    return 1;
  }
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr) {
    std::perror(argv[1]);
    return 2;
  }
  const std::size_t written = std::fwrite(g_model_data, 1, g_model_data_len, f);
  if (std::fclose(f) != 0 || written != g_model_data_len) {
    std::fprintf(stderr, "short write to %s\n", argv[1]);
    return 1;
  }
  std::printf("%s: %u bytes, 16-byte aligned, TFL3\n", argv[1], g_model_data_len);
  return 0;
}
