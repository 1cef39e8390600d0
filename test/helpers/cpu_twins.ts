/**
 * Whether a CUDA suite's CPU-only tests (its fixture on CPU ranks, kept beside the device run) run
 * in this process. test/unit/cuda_emu.test.ts sets MESHTRAIN_TEST_CPU_TWINS=0 for its child runs:
 * `npm test` already runs the same file, and so those CPU tests, against the regular addon, and the
 * emulated build compiles the same CPU code. A CPU run the device test compares against stays.
 *
 * @example
 * if (cpuTwins) test('the fixture on 2 CPU ranks', async () => { ... });
 */
export const cpuTwins = process.env.MESHTRAIN_TEST_CPU_TWINS !== '0';
