//! Opening a GGUF file: magic, header, tensor bounds and architecture are checked before any
//! weight is loaded, so a damaged or foreign file is a one-line error, never a crash.
//! (candle's header reader itself bounds every length by the bytes present.)

use super::error::{candle_message, Result, RuntimeError};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use frontdesk_kernels::ggml::GgmlType;
use memmap2::Mmap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The architectures frontdesk can run, from `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Qwen2,
    Llama,
    Gemma3,
}

impl Architecture {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "qwen2" => Some(Self::Qwen2),
            "llama" => Some(Self::Llama),
            "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Qwen2 => "qwen2",
            Self::Llama => "llama",
            Self::Gemma3 => "gemma3",
        }
    }
}

/// One tensor as the file stores it, borrowed from the memory map.
#[derive(Debug, Clone)]
pub struct RawTensor<'a> {
    pub ty: GgmlType,
    /// Row-major dimensions, outermost first (candle reverses GGUF's `ne0`-first order):
    /// `[rows, cols]` for a matrix, whose rows are `cols` values each.
    pub dims: Vec<usize>,
    pub data: &'a [u8],
}

/// The kernels' name for a candle weight type, or `None` for a type they do not run.
pub fn kernel_type(dtype: GgmlDType) -> Option<GgmlType> {
    Some(match dtype {
        GgmlDType::F32 => GgmlType::F32,
        GgmlDType::F16 => GgmlType::F16,
        GgmlDType::Q4_0 => GgmlType::Q4_0,
        GgmlDType::Q4_1 => GgmlType::Q4_1,
        GgmlDType::Q5_0 => GgmlType::Q5_0,
        GgmlDType::Q8_0 => GgmlType::Q8_0,
        GgmlDType::Q4K => GgmlType::Q4K,
        GgmlDType::Q6K => GgmlType::Q6K,
        _ => return None,
    })
}

/// An opened, validated GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    pub architecture: Architecture,
    mmap: Mmap,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| RuntimeError::io(path, e))?;
        // Safety: the map is read-only and lives as long as this struct; a file changed under a
        // running process is outside what any model loader can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| RuntimeError::io(path, e))?;
        let bytes: &[u8] = &mmap;
        if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
            let magic = String::from_utf8_lossy(&bytes[..bytes.len().min(4)]).into_owned();
            return Err(RuntimeError::NotGguf {
                path: path.to_path_buf(),
                magic,
            });
        }
        let content =
            Content::read(&mut Cursor::new(bytes)).map_err(|e| RuntimeError::CorruptGguf {
                path: path.to_path_buf(),
                reason: candle_message(&e),
            })?;
        let needed = tensor_data_end(&content);
        if needed > bytes.len() as u64 {
            return Err(RuntimeError::TruncatedGguf {
                path: path.to_path_buf(),
                needed,
                found: bytes.len() as u64,
            });
        }
        let arch_name = match content.metadata.get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(RuntimeError::MissingMetadata {
                    path: path.to_path_buf(),
                    key: "general.architecture".into(),
                })
            }
        };
        let architecture = Architecture::from_name(&arch_name).ok_or_else(|| {
            RuntimeError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: arch_name.clone(),
            }
        })?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
            architecture,
            mmap,
        })
    }

    /// A reader over the whole file, for candle's tensor loading.
    pub fn reader(&self) -> Cursor<&[u8]> {
        Cursor::new(&self.mmap[..])
    }

    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// The bytes of tensor `name` straight from the map: `Ok(None)` when the file has no such
    /// tensor, an error when its type is one the kernels do not run.
    pub fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Ok(None);
        };
        let ty =
            kernel_type(info.ggml_dtype).ok_or_else(|| RuntimeError::UnsupportedWeightType {
                path: self.path.clone(),
                tensor: name.to_string(),
                ty: format!("{:?}", info.ggml_dtype),
            })?;
        // `open` checked every extent against the file size; `get` keeps that a typed error
        // rather than an assumption.
        let elems = info.shape.elem_count();
        let len = elems / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let start = self.content.tensor_data_offset + info.offset;
        let data = usize::try_from(start)
            .ok()
            .and_then(|s| self.mmap.get(s..s.checked_add(len)?))
            .ok_or_else(|| RuntimeError::TruncatedGguf {
                path: self.path.clone(),
                needed: start + len as u64,
                found: self.mmap.len() as u64,
            })?;
        Ok(Some(RawTensor {
            ty,
            dims: info.shape.dims().to_vec(),
            data,
        }))
    }

    /// `{arch}.{suffix}` as a float (f32 or f64 in the file).
    pub fn arch_f32(&self, suffix: &str) -> Option<f32> {
        let key = format!("{}.{suffix}", self.architecture.name());
        match self.metadata(&key)? {
            Value::F32(x) => Some(*x),
            Value::F64(x) => Some(*x as f32),
            _ => None,
        }
    }

    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        match self.metadata(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn u32(&self, key: &str) -> Option<u32> {
        self.metadata(key)
            .and_then(value_as_u64)
            .and_then(|v| u32::try_from(v).ok())
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.metadata(key).and_then(|v| v.to_bool().ok())
    }

    /// `{arch}.{suffix}`, required.
    pub fn arch_u32(&self, suffix: &str) -> Result<u32> {
        let key = format!("{}.{suffix}", self.architecture.name());
        self.u32(&key).ok_or(RuntimeError::MissingMetadata {
            path: self.path.clone(),
            key,
        })
    }

    pub fn string_array(&self, key: &str) -> Option<Vec<&str>> {
        match self.metadata(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// Integer metadata of any width as u64.
pub fn value_as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::U16(x) => Some(*x as u64),
        Value::U32(x) => Some(*x as u64),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

fn tensor_data_end(content: &Content) -> u64 {
    content
        .tensor_infos
        .values()
        .map(|info| {
            let elems = info.shape.elem_count() as u64;
            let bytes =
                elems / info.ggml_dtype.block_size() as u64 * info.ggml_dtype.type_size() as u64;
            content.tensor_data_offset + info.offset + bytes
        })
        .max()
        .unwrap_or(content.tensor_data_offset)
}
