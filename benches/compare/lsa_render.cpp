// lsa_render.cpp - libspatialaudio reference renderer for benches/compare.sh
//
// Decodes a third-order AmbiX (ACN channel order, SN3D normalisation) WAV to
// binaural stereo with libspatialaudio's CAmbisonicBinauralizer, block by
// block, and reports how long the library's Process() calls took.
//
// Usage: lsa_render IN.wav OUT.wav SOFA_FILE [BLOCK]
//
// Build (what compare.sh does):
//   g++ -O2 -std=c++14 lsa_render.cpp $(pkg-config --cflags --libs spatialaudio)
//
// Notes on the library version this targets (Debian 12 libspatialaudio-dev,
// 0.3.0+git20180730+dfsg1):
//  * The Debian build is "+dfsg": the built-in MIT KEMAR tables are removed
//    (config.h has HAVE_MYSOFA but not HAVE_MIT_HRTF), so Configure() needs a
//    SOFA path; with an empty path it fails. We always pass the SOFA file.
//  * The binauralizer expects ACN order and SN3D normalisation (it scales its
//    decoder by 2l+1 for SN3D), i.e. AmbiX, so the input needs no conversion.
//  * It decodes to a fixed 20-speaker dodecahedron of virtual loudspeakers,
//    folds their HRIRs into one filter per ambisonic channel, convolves only
//    the left ear and builds the right ear from the same spectra by assuming a
//    symmetric head (its "bLowCPU" path, hard-wired on in this version).
//  * It prints "Getting second/third order dodecahedron" to stdout itself.
//
// The WAV reader/writer is deliberately tiny (no libsndfile dependency): it
// reads PCM 16/24/32-bit and IEEE float 32/64-bit, plain or
// WAVE_FORMAT_EXTENSIBLE, and writes 32-bit float stereo.

#include <spatialaudio/Ambisonics.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "lsa_render: %s\n", msg.c_str());
    std::exit(1);
}

uint16_t le16(const unsigned char* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) {
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
void put16(unsigned char* p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
void put32(unsigned char* p, uint32_t v) {
    p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; p[2] = (v >> 16) & 0xff; p[3] = v >> 24;
}

double now(clockid_t clk) {
    timespec ts;
    clock_gettime(clk, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

struct WavIn {
    FILE* f = nullptr;
    unsigned channels = 0, rate = 0, bits = 0;
    bool is_float = false;
    uint64_t frames_left = 0;
    std::vector<unsigned char> raw;

    void open(const char* path) {
        f = std::fopen(path, "rb");
        if (!f) die(std::string("cannot open ") + path + ": " + std::strerror(errno));
        unsigned char hdr[12];
        if (std::fread(hdr, 1, 12, f) != 12 || std::memcmp(hdr, "RIFF", 4) || std::memcmp(hdr + 8, "WAVE", 4))
            die("not a RIFF/WAVE file");
        bool have_fmt = false;
        for (;;) {
            unsigned char ch[8];
            if (std::fread(ch, 1, 8, f) != 8) die("no data chunk");
            uint32_t size = le32(ch + 4);
            if (!std::memcmp(ch, "fmt ", 4)) {
                std::vector<unsigned char> fmt(size);
                if (size < 16 || std::fread(fmt.data(), 1, size, f) != size) die("bad fmt chunk");
                if (size & 1) std::fgetc(f);
                uint16_t tag = le16(&fmt[0]);
                channels = le16(&fmt[2]);
                rate = le32(&fmt[4]);
                bits = le16(&fmt[14]);
                if (tag == 0xFFFE) {  // WAVE_FORMAT_EXTENSIBLE: real tag is in the SubFormat GUID
                    if (size < 40) die("bad WAVE_FORMAT_EXTENSIBLE fmt chunk");
                    tag = le16(&fmt[24]);
                }
                if (tag == 3) is_float = true;
                else if (tag != 1) die("unsupported WAV format tag " + std::to_string(tag));
                if (is_float ? (bits != 32 && bits != 64) : (bits != 16 && bits != 24 && bits != 32))
                    die("unsupported bit depth " + std::to_string(bits));
                have_fmt = true;
            } else if (!std::memcmp(ch, "data", 4)) {
                if (!have_fmt) die("data chunk before fmt chunk");
                // size 0 or 0xFFFFFFFF: streamed/oversized file, read until EOF.
                frames_left = (size == 0 || size == 0xFFFFFFFFu) ? UINT64_MAX : size / (channels * (bits / 8));
                return;
            } else {
                if (std::fseek(f, long(size) + (size & 1), SEEK_CUR)) die("truncated WAV");
            }
        }
    }

    // Reads up to n frames, de-interleaved into planar float buffers. Returns frames read.
    unsigned read(unsigned n, std::vector<std::vector<float>>& out) {
        if (uint64_t(n) > frames_left) n = unsigned(frames_left);
        const unsigned bps = bits / 8, stride = bps * channels;
        raw.resize(size_t(n) * stride);
        n = unsigned(std::fread(raw.data(), stride, n, f));
        frames_left -= n;
        for (unsigned i = 0; i < n; i++) {
            const unsigned char* p = &raw[size_t(i) * stride];
            for (unsigned c = 0; c < channels; c++, p += bps) {
                float v;
                if (is_float && bits == 32) { std::memcpy(&v, p, 4); }
                else if (is_float) { double d; std::memcpy(&d, p, 8); v = float(d); }
                else if (bits == 16) v = int16_t(le16(p)) / 32768.f;
                else if (bits == 24) v = float(int32_t(uint32_t(p[0]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 24) / 2147483648.0);
                else v = float(int32_t(le32(p)) / 2147483648.0);
                out[c][i] = v;
            }
        }
        return n;
    }
};

struct WavOut {
    FILE* f = nullptr;
    uint32_t data_bytes = 0;
    std::vector<unsigned char> buf;

    // 18-byte fmt (cbSize = 0) plus a fact chunk: what the WAV spec asks of
    // non-PCM data, so strict readers (sox) accept it without warnings.
    static constexpr unsigned kHeader = 12 + 8 + 18 + 8 + 4 + 8;
    void header(unsigned rate) {
        unsigned char h[kHeader];
        unsigned char* p = h;
        std::memcpy(p, "RIFF", 4); put32(p + 4, kHeader - 8 + data_bytes); std::memcpy(p + 8, "WAVE", 4); p += 12;
        std::memcpy(p, "fmt ", 4); put32(p + 4, 18);
        put16(p + 8, 3);             // WAVE_FORMAT_IEEE_FLOAT
        put16(p + 10, 2);            // stereo
        put32(p + 12, rate);
        put32(p + 16, rate * 2 * 4); // byte rate
        put16(p + 20, 2 * 4);        // block align
        put16(p + 22, 32);           // bits per sample
        put16(p + 24, 0);            // cbSize
        p += 26;
        std::memcpy(p, "fact", 4); put32(p + 4, 4); put32(p + 8, data_bytes / 8); p += 12;
        std::memcpy(p, "data", 4); put32(p + 4, data_bytes);
        if (std::fwrite(h, 1, kHeader, f) != kHeader) die("write error");
    }
    void open(const char* path, unsigned rate) {
        f = std::fopen(path, "wb");
        if (!f) die(std::string("cannot create ") + path + ": " + std::strerror(errno));
        header(rate);  // placeholder sizes, patched in close()
    }
    void write(float* const* ch, unsigned n) {
        buf.resize(size_t(n) * 8);
        float* o = reinterpret_cast<float*>(buf.data());
        for (unsigned i = 0; i < n; i++) { o[2 * i] = ch[0][i]; o[2 * i + 1] = ch[1][i]; }
        if (std::fwrite(buf.data(), 8, n, f) != n) die("write error");
        data_bytes += n * 8;
    }
    void close(unsigned rate) {
        std::rewind(f);
        header(rate);
        if (std::fclose(f)) die("write error on close");
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4 || argc > 5) {
        std::fprintf(stderr, "usage: %s IN.wav OUT.wav SOFA_FILE [BLOCK=512]\n", argv[0]);
        return 2;
    }
    const char* in_path = argv[1];
    const char* out_path = argv[2];
    const std::string sofa = argv[3];
    const unsigned block = argc > 4 ? unsigned(std::atoi(argv[4])) : 512;
    const unsigned order = 3;
    if (block == 0) die("block size must be > 0");

    const double wall0 = now(CLOCK_MONOTONIC), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID);

    WavIn in;
    in.open(in_path);
    const unsigned nch = OrderToComponents(order, true);  // 16 for 3D order 3
    if (in.channels != nch)
        die("expected " + std::to_string(nch) + " channels (order 3 AmbiX), got " + std::to_string(in.channels));

    // Set-up cost (SOFA load, filter design) is kept out of the per-block
    // timing but is inside the total the script measures.
    CAmbisonicBinauralizer binauralizer;
    unsigned tail = 0;
    if (!binauralizer.Configure(order, true, in.rate, block, tail, sofa))
        die("CAmbisonicBinauralizer::Configure failed (is " + sofa + " a readable SOFA file?)");
    CBFormat bformat;
    bformat.Configure(order, true, block);

    std::vector<std::vector<float>> planes(nch, std::vector<float>(block, 0.f));
    std::vector<float> left(block), right(block);
    float* dst[2] = {left.data(), right.data()};

    WavOut out;
    out.open(out_path, in.rate);

    double proc_wall = 0, proc_cpu = 0;
    uint64_t frames_in = 0;
    // The binauralizer's filters are `tail` samples long; feed that many
    // extra zero samples so the output contains the whole decay.
    uint64_t flush_left = tail;
    for (;;) {
        unsigned n = in.read(block, planes);
        frames_in += n;
        if (n < block) {
            // Last partial block / tail flush: zero-pad (Process() always
            // consumes exactly `block` samples).
            for (auto& p : planes) std::fill(p.begin() + n, p.end(), 0.f);
            unsigned extra = unsigned(std::min<uint64_t>(flush_left, block - n));
            flush_left -= extra;
            n += extra;
            if (n == 0) break;
        }
        for (unsigned c = 0; c < nch; c++) bformat.InsertStream(planes[c].data(), c, block);
        const double w = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        binauralizer.Process(&bformat, dst);
        proc_wall += now(CLOCK_MONOTONIC) - w;
        proc_cpu += now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        out.write(dst, n);
    }
    out.close(in.rate);

    const double secs = double(frames_in) / in.rate;
    const double wall = now(CLOCK_MONOTONIC) - wall0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    // One machine-readable line for compare.sh, prefixed so the library's own
    // stdout chatter can be told apart.
    std::printf("LSA_RESULT hrtf=sofa:%s order=%u block=%u taps=%u rate=%u audio_s=%.3f "
                "process_cpu_s=%.3f process_wall_s=%.3f process_xrt=%.1f total_cpu_s=%.3f total_wall_s=%.3f\n",
                sofa.c_str(), order, block, tail, in.rate, secs, proc_cpu, proc_wall,
                proc_cpu > 0 ? secs / proc_cpu : 0.0, cpu, wall);
    return 0;
}
