//! The knowledge base's vector index, `vectors.usearch`: an HNSW graph (usearch) of chunk
//! embeddings, cosine metric, stored as f16, keyed by chunk id.

use std::path::Path;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::kb::error::{KbError, Result};

/// Dimensions of the embedding model the knowledge base is built for (all-MiniLM-L6-v2 class).
pub const DIMENSIONS: usize = 384;

/// Capacity reserved at least, and the step by which a full index grows.
const MIN_CAPACITY: usize = 64;

pub struct VectorIndex {
    index: Index,
    dimensions: usize,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimensions", &self.dimensions)
            .field("len", &self.len())
            .finish()
    }
}

fn options(dimensions: usize) -> IndexOptions {
    IndexOptions {
        dimensions,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F16,
        connectivity: 0,
        expansion_add: 0,
        expansion_search: 0,
        multi: false,
    }
}

fn index_error(path: &Path, reason: impl std::fmt::Display) -> KbError {
    KbError::VectorIndex {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// usearch takes paths as `&str`.
fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| index_error(path, "the path is not valid UTF-8"))
}

impl VectorIndex {
    /// A new, empty index of `dimensions` with room for `capacity` vectors (it grows on add).
    pub fn create(dimensions: usize, capacity: usize) -> Result<VectorIndex> {
        let here = Path::new("(in memory)");
        if dimensions == 0 {
            return Err(index_error(here, "an index needs at least one dimension"));
        }
        let index = Index::new(&options(dimensions)).map_err(|e| index_error(here, e))?;
        index
            .reserve(capacity.max(MIN_CAPACITY))
            .map_err(|e| index_error(here, e))?;
        Ok(VectorIndex { index, dimensions })
    }

    /// Loads an index saved by `save`, checking that it holds `dimensions`-dimensional cosine
    /// f16 vectors; a file that is missing, corrupt or of another shape is an error.
    pub fn load(path: &Path, dimensions: usize) -> Result<VectorIndex> {
        let name = path_str(path)?;
        let len = std::fs::metadata(path)
            .map_err(|e| KbError::io(path, e))?
            .len();
        if len == 0 {
            return Err(index_error(path, "the file is empty"));
        }
        let meta = Index::metadata(name)
            .map_err(|e| index_error(path, format!("not a usearch index ({e})")))?;
        if meta.dimensions != dimensions as u64 {
            return Err(KbError::VectorDimensions {
                expected: dimensions,
                found: usize::try_from(meta.dimensions).unwrap_or(usize::MAX),
            });
        }
        if meta.metric != MetricKind::Cos || meta.quantization != ScalarKind::F16 || meta.multi {
            return Err(index_error(
                path,
                "the index was not built with the cosine metric and f16 vectors",
            ));
        }
        let index = Index::new(&options(dimensions)).map_err(|e| index_error(path, e))?;
        index
            .load(name)
            .map_err(|e| index_error(path, format!("cannot load ({e})")))?;
        if index.dimensions() != dimensions {
            return Err(KbError::VectorDimensions {
                expected: dimensions,
                found: index.dimensions(),
            });
        }
        Ok(VectorIndex { index, dimensions })
    }

    /// Writes the index to `path` (replacing the file).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.index
            .save(path_str(path)?)
            .map_err(|e| index_error(path, format!("cannot save ({e})")))
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: i64) -> bool {
        u64::try_from(key).is_ok_and(|k| self.index.contains(k))
    }

    fn check(&self, vector: &[f32]) -> Result<()> {
        if vector.len() != self.dimensions {
            return Err(KbError::VectorDimensions {
                expected: self.dimensions,
                found: vector.len(),
            });
        }
        Ok(())
    }

    fn key(key: i64) -> Result<u64> {
        u64::try_from(key)
            .map_err(|_| index_error(Path::new("(in memory)"), format!("negative key {key}")))
    }

    /// Stores `vector` under `key` (a chunk id), replacing a vector already stored there.
    pub fn add(&mut self, key: i64, vector: &[f32]) -> Result<()> {
        self.check(vector)?;
        let k = Self::key(key)?;
        let here = Path::new("(in memory)");
        if self.index.contains(k) {
            self.index.remove(k).map_err(|e| index_error(here, e))?;
        }
        if self.index.size() >= self.index.capacity() {
            let grown = (self.index.capacity() * 2).max(MIN_CAPACITY);
            self.index
                .reserve(grown)
                .map_err(|e| index_error(here, e))?;
        }
        self.index.add(k, vector).map_err(|e| index_error(here, e))
    }

    /// Removes the vector under `key`; whether there was one.
    pub fn remove(&mut self, key: i64) -> Result<bool> {
        let Ok(k) = u64::try_from(key) else {
            return Ok(false);
        };
        let removed = self
            .index
            .remove(k)
            .map_err(|e| index_error(Path::new("(in memory)"), e))?;
        Ok(removed > 0)
    }

    /// The `k` nearest keys to `query` with their cosine distances (0 = same direction),
    /// nearest first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(i64, f32)>> {
        self.check(query)?;
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .index
            .search(query, k)
            .map_err(|e| index_error(Path::new("(in memory)"), e))?;
        Ok(found
            .keys
            .iter()
            .zip(found.distances.iter())
            .filter_map(|(&key, &d)| i64::try_from(key).ok().map(|key| (key, d)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random unit-ish vector for `seed`.
    fn vector(seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..DIMENSIONS)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    fn filled(n: i64) -> VectorIndex {
        let mut index = VectorIndex::create(DIMENSIONS, 4).unwrap();
        for id in 1..=n {
            index.add(id, &vector(id as u64)).unwrap();
        }
        index
    }

    #[test]
    fn nearest_neighbour_of_a_stored_vector_is_itself() {
        let index = filled(200);
        assert_eq!(index.len(), 200);
        for id in [1, 57, 200] {
            let hits = index.search(&vector(id as u64), 3).unwrap();
            assert_eq!(hits[0].0, id, "{hits:?}");
            assert!(hits[0].1 < 0.01, "{hits:?}");
            assert!(hits[1].1 > hits[0].1);
        }
    }

    #[test]
    fn remove_drops_the_key() {
        let mut index = filled(50);
        assert!(index.remove(7).unwrap());
        assert!(!index.remove(7).unwrap());
        assert!(!index.contains(7));
        assert_eq!(index.len(), 49);
        let hits = index.search(&vector(7), 5).unwrap();
        assert!(hits.iter().all(|h| h.0 != 7), "{hits:?}");
    }

    #[test]
    fn adding_a_key_again_replaces_its_vector() {
        let mut index = filled(20);
        index.add(3, &vector(1000)).unwrap();
        assert_eq!(index.len(), 20);
        assert_eq!(index.search(&vector(1000), 1).unwrap()[0].0, 3);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.usearch");
        let index = filled(100);
        index.save(&path).unwrap();
        let loaded = VectorIndex::load(&path, DIMENSIONS).unwrap();
        assert_eq!(loaded.len(), 100);
        for id in [1, 50, 100] {
            assert_eq!(
                loaded.search(&vector(id as u64), 1).unwrap(),
                index.search(&vector(id as u64), 1).unwrap()
            );
        }
    }

    #[test]
    fn wrong_dimensions_are_errors() {
        let mut index = filled(3);
        let err = index.add(9, &[0.5; 3]).unwrap_err();
        assert!(
            matches!(
                err,
                KbError::VectorDimensions {
                    expected: DIMENSIONS,
                    found: 3
                }
            ),
            "{err:?}"
        );
        assert!(index.search(&[0.5; 385], 1).is_err());
        assert_eq!(index.len(), 3);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.usearch");
        index.save(&path).unwrap();
        let err = VectorIndex::load(&path, 768).unwrap_err();
        assert!(matches!(
            err,
            KbError::VectorDimensions {
                expected: 768,
                found: DIMENSIONS
            }
        ));
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.usearch");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            VectorIndex::load(&path, DIMENSIONS),
            Err(KbError::VectorIndex { .. })
        ));
        std::fs::write(&path, "not an index at all\n".repeat(100)).unwrap();
        let err = VectorIndex::load(&path, DIMENSIONS).unwrap_err();
        assert!(matches!(err, KbError::VectorIndex { .. }), "{err:?}");
        // A real index cut short, in its middle and near its end.
        filled(100).save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 100] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = VectorIndex::load(&path, DIMENSIONS).unwrap_err();
            assert!(matches!(err, KbError::VectorIndex { .. }), "{cut}: {err:?}");
        }
        assert!(matches!(
            VectorIndex::load(&dir.path().join("missing"), DIMENSIONS),
            Err(KbError::Io { .. })
        ));
    }
}
