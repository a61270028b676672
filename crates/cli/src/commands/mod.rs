pub mod act;
pub mod completions;
pub mod gpus;
pub mod logs;
pub mod ls;
pub mod show;
pub mod submit;
pub mod top;
