# n virtual loudspeakers on a Fibonacci (golden-angle) sphere, for ffmpeg's
# sofalizer, addressed by channel index: "0 az el|1 az el|...". Near-uniform
# coverage, every speaker at its own azimuth and elevation. Azimuth is
# counter-clockwise from the front, elevation up, degrees.
#   awk -v n=16 -f benches/compare/speakers.awk
BEGIN {
    pi = atan2(0, -1); golden = pi * (3 - sqrt(5))
    for (i = 0; i < n; i++) {
        z = 1 - (2 * i + 1) / n
        el = atan2(z, sqrt(1 - z * z)) * 180 / pi
        az = i * golden * 180 / pi; az -= 360 * int(az / 360)
        printf "%s%d %.2f %.2f", (i ? "|" : ""), i, az, el
    }
}
