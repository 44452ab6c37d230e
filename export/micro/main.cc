// Run an edgeface model on a microcontroller (or a host build) with TensorFlow Lite Micro.
//
// Inputs: the files `edgeface convert ... --c-array` writes into NAME_micro/:
//   model_data.h/.cc  the .tflite as a 16-byte aligned C array (g_model_data, g_model_data_len)
//   ops_resolver.h    kEdgefaceNumOps, kEdgefaceTensorArenaSize, EdgefaceRegisterOps()
//
// What it does: builds the interpreter in a static arena, fills the input with a face image
// (raw RGB/GRAY bytes of the model's input size given as argv[1] on a host build; a mid-grey
// image otherwise), applies the card's normalisation ((x - 127.5) / 127.5) and the input
// quantisation, runs one inference and prints the dequantised embedding (L2-normalise it on the
// host before comparing with cosine) and the arena bytes actually used.
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "model_data.h"
#include "ops_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
constexpr float kPixelMean = 127.5f;  // the card's input.normalization
constexpr float kPixelStd = 127.5f;
alignas(16) uint8_t tensor_arena[kEdgefaceTensorArenaSize];

float Normalise(uint8_t pixel) { return (static_cast<float>(pixel) - kPixelMean) / kPixelStd; }

// Writes one normalised pixel into the input tensor, quantising when the input is int8.
void SetInput(TfLiteTensor* input, int i, float x) {
  if (input->type == kTfLiteInt8) {
    const float q = std::round(x / input->params.scale) + input->params.zero_point;
    input->data.int8[i] = static_cast<int8_t>(q < -128.f ? -128.f : (q > 127.f ? 127.f : q));
  } else {
    input->data.f[i] = x;
  }
}

float GetOutput(const TfLiteTensor* output, int i) {
  if (output->type == kTfLiteInt8) {
    return (output->data.int8[i] - output->params.zero_point) * output->params.scale;
  }
  return output->data.f[i];
}

int ElementCount(const TfLiteTensor* t) {
  int n = 1;
  for (int d = 0; d < t->dims->size; ++d) n *= t->dims->data[d];
  return n;
}
}  // namespace

int main(int argc, char** argv) {
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema %d != supported %d", model->version(), TFLITE_SCHEMA_VERSION);
    return 1;
  }
  static EdgefaceOpResolver resolver;
  if (EdgefaceRegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("registering ops failed");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kEdgefaceTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("AllocateTensors failed: raise kEdgefaceTensorArenaSize (%u)", (unsigned)kEdgefaceTensorArenaSize);
    return 1;
  }
  TfLiteTensor* input = interpreter.input(0);
  const int n_in = ElementCount(input);

  // Host build: argv[1] = raw uint8 pixels (H*W*C, already aligned/resized). Device: mid-grey.
  static uint8_t pixels[112 * 112 * 3];
  int have = 0;
#if !defined(TF_LITE_MCU)
  if (argc > 1) {
    if (std::FILE* f = std::fopen(argv[1], "rb")) {
      have = static_cast<int>(std::fread(pixels, 1, sizeof(pixels), f));
      std::fclose(f);
    }
  }
#endif
  for (int i = 0; i < n_in; ++i) SetInput(input, i, Normalise(i < have ? pixels[i] : 128));

  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return 1;
  }
  const TfLiteTensor* output = interpreter.output(0);
  const int n_out = ElementCount(output);
  for (int i = 0; i < n_out; ++i) MicroPrintf("%d %f", i, static_cast<double>(GetOutput(output, i)));
  MicroPrintf("arena used: %u of %u bytes", (unsigned)interpreter.arena_used_bytes(),
              (unsigned)kEdgefaceTensorArenaSize);
  return 0;
}
