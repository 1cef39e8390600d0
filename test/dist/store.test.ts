import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StoreClient, StoreServer } from '../../src/dist/store.ts';

async function rejects(p: Promise<unknown>, re: RegExp): Promise<string> {
  try {
    await p;
  } catch (e) {
    const msg = (e as Error).message;
    assert.match(msg, re);
    return msg;
  }
  throw new Error(`expected a rejection matching ${re}`);
}

test('store: set/get/wait/add/compareSet/delete, binary-safe, many calls in flight', async () => {
  const server = await StoreServer.listen(0, '127.0.0.1');
  const a = await StoreClient.connect('127.0.0.1', server.port, { timeoutMs: 5000 });
  const b = await StoreClient.connect('127.0.0.1', server.port, { timeoutMs: 5000 });
  try {
    const bytes = new Uint8Array([0, 255, 10, 13, 0, 1]);
    const got = b.get('bin');                       // waits until set
    await a.set('bin', bytes);
    assert.equal([...(await got)], [...bytes]);
    await a.set('s', 'héllo');
    assert.is(await b.getString('s'), 'héllo');
    await a.set('empty', '');
    assert.is((await b.get('empty')).length, 0);

    const waiting = b.wait(['x', 'y']);
    await a.set('x', '1');
    await a.set('y', '2');
    await waiting;

    const adds = await Promise.all([a.add('n', 1), b.add('n', 1), a.add('n', 5)]);
    assert.is(Math.max(...adds), 7);
    assert.is(new Set(adds).size, 3, 'each add sees its own result');
    assert.is(await a.add('n', -7), 0);

    let r = await a.compareSet('cas', '', 'first');     // absent + empty expected: set
    assert.ok(r.swapped);
    r = await b.compareSet('cas', 'nope', 'second');
    assert.not.ok(r.swapped);
    assert.is(r.value?.toString(), 'first');
    r = await b.compareSet('cas', 'first', 'second');
    assert.ok(r.swapped);
    assert.is(r.value?.toString(), 'second');

    assert.ok(await a.check(['x', 'y', 'cas']));
    assert.not.ok(await a.check(['x', 'zzz']));
    assert.ok(await a.delete('x'));
    assert.not.ok(await a.delete('x'));
    assert.not.ok(await a.check(['x']));

    // Barrier: all arrive, then all leave.
    await Promise.all([a.barrier('b0', 2), b.barrier('b0', 2)]);

    // Large values survive framing split across TCP chunks.
    const big = new Uint8Array(3 << 20).map((_, i) => i * 7);
    await a.set('big', big);
    assert.ok(Buffer.from(big).equals(await b.get('big')));
  } finally {
    a.close();
    b.close();
    await server.close();
  }
});

test('store: timeouts name the keys, the address and the time waited', async () => {
  const server = await StoreServer.listen(0, '127.0.0.1');
  const a = await StoreClient.connect('127.0.0.1', server.port);
  try {
    await a.set('present', '1');
    const t0 = Date.now();
    const msg = await rejects(a.wait(['present', 'absent'], 300), /timed out after \d+ ms waiting for \[present, absent\]/);
    assert.ok(Date.now() - t0 >= 290, 'waited the whole timeout');
    assert.match(msg, `127.0.0.1:${server.port}`);
    assert.match(msg, 'still missing: absent');
    await rejects(a.get('nothing', 200), /store\.get: timed out after \d+ ms waiting for \[nothing\]/);
    await rejects(a.barrier('lonely', 2, 200), /1 of 2 participants arrived at barrier 'lonely'/);
  } finally {
    a.close();
    await server.close();
  }
});

test('store: an unreachable master is reported with its address after the deadline', async () => {
  const server = await StoreServer.listen(0, '127.0.0.1');
  const port = server.port;
  await server.close();                     // nothing listens on this port now
  const t0 = Date.now();
  await rejects(
    StoreClient.connect('127.0.0.1', port, { connectTimeoutMs: 300 }),
    new RegExp(`cannot reach the rendezvous store at 127\\.0\\.0\\.1:${port} after \\d+ ms`),
  );
  assert.ok(Date.now() - t0 >= 290, 'retried until the deadline');
});

test('store: a client connecting before the server starts gets through (retry)', async () => {
  const probe = await StoreServer.listen(0, '127.0.0.1');
  const port = probe.port;
  await probe.close();
  const connecting = StoreClient.connect('127.0.0.1', port, { connectTimeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 150));
  const server = await StoreServer.listen(port, '127.0.0.1');
  const c = await connecting;
  await c.set('k', 'v');
  assert.is(await c.getString('k'), 'v');
  c.close();
  await rejects(c.get('k'), /closed/);
  await server.close();
});

test('store: calls in flight fail when the server goes away', async () => {
  const server = await StoreServer.listen(0, '127.0.0.1');
  const c = await StoreClient.connect('127.0.0.1', server.port);
  const waiting = c.wait(['never'], 60_000);
  await server.close();
  await rejects(waiting, /wait\(never\) failed/);
  c.close();
});

test.run();
