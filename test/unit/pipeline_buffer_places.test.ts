// Which buffers a pipeline checkpoint saves (src/pipeline/buffer_checkpoint.ts), in one process: a
// PipelineModule holding every stage. Persistent buffers only (BatchNorm's three), each tensor
// once even when a tied layer occurs twice on this rank, named by the checkpoint key of (layer
// index, name); parameters are not buffers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LayerSpec, Module, manualSeed, nn, PipelineModule, type Tensor, TiedLayerSpec, zeros } from '../../src/index.ts';
import { bufferPlaces } from '../../src/pipeline/buffer_checkpoint.ts';

class WithScratch extends Module {
  constructor() {
    super();
    this.registerBuffer('kept', zeros([2], { tag: 'other' }));
    this.registerBuffer('scratch', zeros([2], { tag: 'other' }), { persistent: false });
  }

  override forward(x: Tensor): Tensor {
    return x;
  }
}

test('bufferPlaces: persistent buffers of the held layers, each once, by checkpoint key', () => {
  manualSeed(0);
  const pipe = new PipelineModule({
    layers: [
      new TiedLayerSpec('bn', nn.BatchNorm2d, [4], { tiedWeightAttr: 'weight' }), new LayerSpec(WithScratch, []),
      new LayerSpec(nn.Conv2d, [4, 4, 1]), new TiedLayerSpec('bn', nn.BatchNorm2d, [4], { tiedWeightAttr: 'weight' }),
    ],
    numStages: 2, partitionMethod: 'uniform',
  });
  const places = bufferPlaces(pipe, (i, n) => `L${i}/${n}`, 'test');
  assert.equal(places.map((b) => [b.name, b.full]), [
    ['0.running_mean', 'L0/running_mean'], ['0.running_var', 'L0/running_var'], ['0.num_batches_tracked', 'L0/num_batches_tracked'], ['1.kept', 'L1/kept'],
  ]);
  assert.equal(places.map((b) => b.t.dtype), ['f32', 'f32', 'i64', 'f32']);
  pipe.dispose();
});

test.run();
