/** The zip reader on an images.zip made by Python's zipfile: stored and deflated members, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { decodeImage, ImageDecodeError, openZip, processImages, readImageProcessorConfig, ZipError } from '../../src/images/index.js';
import { tf } from '../../src/runtime/tf.js';
import { tempDir } from '../helpers.js';
import { imageFixture } from './fixtures.js';

test('reads stored and deflated members, skipping directory entries', async () => {
  const zip = await openZip(imageFixture('images.zip'));
  try {
    assert.deepEqual(zip.names, ['images/odd-rgb.png', 'images/sub/photo.jpg', 'images/notes.txt', 'images/stored.txt']);
    assert.equal(zip.entry('images/odd-rgb.png')!.method, 0);
    assert.equal(zip.entry('images/sub/photo.jpg')!.method, 8);
    assert.deepEqual(Buffer.from(await zip.read('images/odd-rgb.png')), readFileSync(imageFixture('odd-rgb.png')));
    assert.deepEqual(Buffer.from(await zip.read('images/sub/photo.jpg')), readFileSync(imageFixture('photo.jpg')));
    assert.equal(Buffer.from(await zip.read('images/notes.txt')).toString(), 'a deflated text member '.repeat(40));
    assert.equal(Buffer.from(await zip.read('images/stored.txt')).toString(), 'stored bytes');
    const fromZip = await decodeImage({ zip, member: 'images/sub/photo.jpg' });
    const fromFile = await decodeImage(imageFixture('photo.jpg'));
    assert.deepEqual(fromZip, fromFile);
    // a batch from a zip member and a file, straight to pixel_values
    const cfg = await readImageProcessorConfig(imageFixture('preprocessor-siglip-bicubic.json'));
    const px = await processImages([{ zip, member: 'images/odd-rgb.png' }, imageFixture('photo.jpg')], cfg);
    assert.deepEqual(px.shape, [2, 3, 16, 16]);
    const ref = await processImages([imageFixture('odd-rgb.png')], cfg);
    assert.deepEqual(px.dataSync().subarray(0, 768), ref.dataSync());
    tf.dispose([px, ref]);
  } finally {
    await zip.close();
  }
});

test('a member that does not exist names the archive and the member, and suggests a near name', async () => {
  const zipPath = imageFixture('images.zip');
  const zip = await openZip(zipPath);
  try {
    await assert.rejects(zip.read('photo.jpg'), (e: unknown) => {
      assert.ok(e instanceof ZipError);
      assert.equal(e.file, zipPath);
      assert.equal(e.field, 'photo.jpg');
      assert.match(e.message, /no member named "photo\.jpg" \(the archive has 4 files\)/);
      assert.match(e.message, /did you mean "images\/sub\/photo\.jpg"/);
      return true;
    });
    await assert.rejects(decodeImage({ zip, member: 'images/none.png' }), /images\.zip: images\/none\.png: no member named/);
    // a member that is not an image: the error names archive and member
    await assert.rejects(decodeImage({ zip, member: 'images/notes.txt' }), (e: unknown) => e instanceof ImageDecodeError && e.file === `${zipPath}:images/notes.txt`);
  } finally {
    await zip.close();
  }
  await assert.rejects(zip.read('images/stored.txt'), /read after close/);
});

test('damaged and missing archives fail clearly', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await assert.rejects(openZip(path.join(dir, 'nope.zip')), /nope\.zip: zip archive not found/);
    const notZip = path.join(dir, 'not.zip');
    writeFileSync(notZip, 'plain text');
    await assert.rejects(openZip(notZip), /not\.zip: not a readable zip archive: no end-of-central-directory record/);
    // flip a byte inside the deflated text member: inflate or the CRC check must catch it
    const bytes = Buffer.from(readFileSync(imageFixture('images.zip')));
    const zip0 = await openZip(imageFixture('images.zip'));
    const e = zip0.entry('images/stored.txt')!;
    await zip0.close();
    const at = e.localHeaderOffset + 30 + 'images/stored.txt'.length + 2;
    bytes[at] = bytes[at]! ^ 0xff;
    const damaged = path.join(dir, 'damaged.zip');
    writeFileSync(damaged, bytes);
    const zip = await openZip(damaged);
    try {
      await assert.rejects(zip.read('images/stored.txt'), /damaged\.zip: images\/stored\.txt: member is damaged: CRC-32 mismatch/);
    } finally {
      await zip.close();
    }
  } finally {
    await cleanup();
  }
});
