"""Keras layers on PyTorch modules (``channels_last`` images by default)."""

from .activation_layers import (
    ELU as ELU,
)
from .activation_layers import (
    LeakyReLU as LeakyReLU,
)
from .activation_layers import (
    PReLU as PReLU,
)
from .activation_layers import (
    ReLU as ReLU,
)
from .activation_layers import (
    Softmax as Softmax,
)
from .attention import (
    AdditiveAttention as AdditiveAttention,
)
from .attention import (
    Attention as Attention,
)
from .attention import (
    GroupedQueryAttention as GroupedQueryAttention,
)
from .attention import (
    GroupQueryAttention as GroupQueryAttention,
)
from .attention import (
    MultiHeadAttention as MultiHeadAttention,
)
from .conv import (
    Conv1D as Conv1D,
)
from .conv import (
    Conv2D as Conv2D,
)
from .conv import (
    Conv3D as Conv3D,
)
from .conv import (
    Convolution1D as Convolution1D,
)
from .conv import (
    Convolution2D as Convolution2D,
)
from .conv import (
    Convolution3D as Convolution3D,
)
from .conv_transpose import (
    Conv1DTranspose as Conv1DTranspose,
)
from .conv_transpose import (
    Conv2DTranspose as Conv2DTranspose,
)
from .conv_transpose import (
    Conv3DTranspose as Conv3DTranspose,
)
from .conv_transpose import (
    Convolution1DTranspose as Convolution1DTranspose,
)
from .conv_transpose import (
    Convolution2DTranspose as Convolution2DTranspose,
)
from .conv_transpose import (
    Convolution3DTranspose as Convolution3DTranspose,
)
from .core import (
    Activation as Activation,
)
from .core import (
    Embedding as Embedding,
)
from .core import (
    Identity as Identity,
)
from .core import (
    Lambda as Lambda,
)
from .core import (
    Masking as Masking,
)
from .core import (
    TorchModuleWrapper as TorchModuleWrapper,
)
from .dense import (
    Dense as Dense,
)
from .depthwise_conv import (
    DepthwiseConv1D as DepthwiseConv1D,
)
from .depthwise_conv import (
    DepthwiseConv2D as DepthwiseConv2D,
)
from .einsum_dense import (
    EinsumDense as EinsumDense,
)
from .layer import Layer as Layer
from .merging import (
    Add as Add,
)
from .merging import (
    Average as Average,
)
from .merging import (
    Concatenate as Concatenate,
)
from .merging import (
    Dot as Dot,
)
from .merging import (
    Maximum as Maximum,
)
from .merging import (
    Minimum as Minimum,
)
from .merging import (
    Multiply as Multiply,
)
from .merging import (
    Subtract as Subtract,
)
from .merging import (
    add as add,
)
from .merging import (
    average as average,
)
from .merging import (
    concatenate as concatenate,
)
from .merging import (
    dot as dot,
)
from .merging import (
    maximum as maximum,
)
from .merging import (
    minimum as minimum,
)
from .merging import (
    multiply as multiply,
)
from .merging import (
    subtract as subtract,
)
from .normalization import (
    BatchNormalization as BatchNormalization,
)
from .normalization import (
    GroupNormalization as GroupNormalization,
)
from .normalization import (
    LayerNormalization as LayerNormalization,
)
from .pooling import (
    AveragePooling1D as AveragePooling1D,
)
from .pooling import (
    AveragePooling2D as AveragePooling2D,
)
from .pooling import (
    AveragePooling3D as AveragePooling3D,
)
from .pooling import (
    AvgPool1D as AvgPool1D,
)
from .pooling import (
    AvgPool2D as AvgPool2D,
)
from .pooling import (
    AvgPool3D as AvgPool3D,
)
from .pooling import (
    GlobalAveragePooling1D as GlobalAveragePooling1D,
)
from .pooling import (
    GlobalAveragePooling2D as GlobalAveragePooling2D,
)
from .pooling import (
    GlobalAveragePooling3D as GlobalAveragePooling3D,
)
from .pooling import (
    GlobalAvgPool1D as GlobalAvgPool1D,
)
from .pooling import (
    GlobalAvgPool2D as GlobalAvgPool2D,
)
from .pooling import (
    GlobalAvgPool3D as GlobalAvgPool3D,
)
from .pooling import (
    GlobalMaxPool1D as GlobalMaxPool1D,
)
from .pooling import (
    GlobalMaxPool2D as GlobalMaxPool2D,
)
from .pooling import (
    GlobalMaxPool3D as GlobalMaxPool3D,
)
from .pooling import (
    GlobalMaxPooling1D as GlobalMaxPooling1D,
)
from .pooling import (
    GlobalMaxPooling2D as GlobalMaxPooling2D,
)
from .pooling import (
    GlobalMaxPooling3D as GlobalMaxPooling3D,
)
from .pooling import (
    MaxPool1D as MaxPool1D,
)
from .pooling import (
    MaxPool2D as MaxPool2D,
)
from .pooling import (
    MaxPool3D as MaxPool3D,
)
from .pooling import (
    MaxPooling1D as MaxPooling1D,
)
from .pooling import (
    MaxPooling2D as MaxPooling2D,
)
from .pooling import (
    MaxPooling3D as MaxPooling3D,
)
from .preprocessing import (
    CategoryEncoding as CategoryEncoding,
)
from .preprocessing import (
    CenterCrop as CenterCrop,
)
from .preprocessing import (
    Discretization as Discretization,
)
from .preprocessing import (
    Normalization as Normalization,
)
from .preprocessing import (
    RandomContrast as RandomContrast,
)
from .preprocessing import (
    RandomCrop as RandomCrop,
)
from .preprocessing import (
    RandomFlip as RandomFlip,
)
from .preprocessing import (
    RandomRotation as RandomRotation,
)
from .preprocessing import (
    RandomTranslation as RandomTranslation,
)
from .preprocessing import (
    RandomZoom as RandomZoom,
)
from .preprocessing import (
    Rescaling as Rescaling,
)
from .preprocessing import (
    Resizing as Resizing,
)
from .recurrent import (
    GRU as GRU,
)
from .recurrent import (
    LSTM as LSTM,
)
from .recurrent import (
    RNN as RNN,
)
from .recurrent import (
    Bidirectional as Bidirectional,
)
from .recurrent import (
    GRUCell as GRUCell,
)
from .recurrent import (
    LSTMCell as LSTMCell,
)
from .recurrent import (
    SimpleRNN as SimpleRNN,
)
from .recurrent import (
    SimpleRNNCell as SimpleRNNCell,
)
from .recurrent import (
    StackedRNNCells as StackedRNNCells,
)
from .regularization import (
    ActivityRegularization as ActivityRegularization,
)
from .regularization import (
    AlphaDropout as AlphaDropout,
)
from .regularization import (
    Dropout as Dropout,
)
from .regularization import (
    GaussianDropout as GaussianDropout,
)
from .regularization import (
    GaussianNoise as GaussianNoise,
)
from .regularization import (
    SpatialDropout1D as SpatialDropout1D,
)
from .regularization import (
    SpatialDropout2D as SpatialDropout2D,
)
from .regularization import (
    SpatialDropout3D as SpatialDropout3D,
)
from .reshaping import (
    Cropping1D as Cropping1D,
)
from .reshaping import (
    Cropping2D as Cropping2D,
)
from .reshaping import (
    Cropping3D as Cropping3D,
)
from .reshaping import (
    Flatten as Flatten,
)
from .reshaping import (
    Permute as Permute,
)
from .reshaping import (
    RepeatVector as RepeatVector,
)
from .reshaping import (
    Reshape as Reshape,
)
from .reshaping import (
    UpSampling1D as UpSampling1D,
)
from .reshaping import (
    UpSampling2D as UpSampling2D,
)
from .reshaping import (
    UpSampling3D as UpSampling3D,
)
from .reshaping import (
    ZeroPadding1D as ZeroPadding1D,
)
from .reshaping import (
    ZeroPadding2D as ZeroPadding2D,
)
from .reshaping import (
    ZeroPadding3D as ZeroPadding3D,
)
from .rms_normalization import (
    RMSNormalization as RMSNormalization,
)
from .separable_conv import (
    SeparableConv1D as SeparableConv1D,
)
from .separable_conv import (
    SeparableConv2D as SeparableConv2D,
)
from .separable_conv import (
    SeparableConvolution1D as SeparableConvolution1D,
)
from .separable_conv import (
    SeparableConvolution2D as SeparableConvolution2D,
)
from .symbolic import (
    Input as Input,
)
from .symbolic import (
    InputLayer as InputLayer,
)
from .symbolic import (
    KerasTensor as KerasTensor,
)
from .symbolic import (
    TensorOp as TensorOp,
)
from .time_distributed import (
    TimeDistributed as TimeDistributed,
)
from .unit_normalization import (
    UnitNormalization as UnitNormalization,
)

__all__ = [
    "Activation",
    "ActivityRegularization",
    "Add",
    "AdditiveAttention",
    "AlphaDropout",
    "Attention",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "BatchNormalization",
    "Bidirectional",
    "CategoryEncoding",
    "CenterCrop",
    "Concatenate",
    "Conv1D",
    "Conv1DTranspose",
    "Conv2D",
    "Conv2DTranspose",
    "Conv3D",
    "Conv3DTranspose",
    "Convolution1D",
    "Convolution1DTranspose",
    "Convolution2D",
    "Convolution2DTranspose",
    "Convolution3D",
    "Convolution3DTranspose",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Dense",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Discretization",
    "Dot",
    "Dropout",
    "ELU",
    "EinsumDense",
    "Embedding",
    "Flatten",
    "GRU",
    "GRUCell",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalAvgPool3D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPool3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GroupNormalization",
    "GroupQueryAttention",
    "GroupedQueryAttention",
    "Identity",
    "Input",
    "InputLayer",
    "KerasTensor",
    "LSTM",
    "LSTMCell",
    "Lambda",
    "Layer",
    "LayerNormalization",
    "LeakyReLU",
    "Masking",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "MultiHeadAttention",
    "Multiply",
    "Normalization",
    "PReLU",
    "Permute",
    "RMSNormalization",
    "RNN",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "ReLU",
    "RepeatVector",
    "Rescaling",
    "Reshape",
    "Resizing",
    "SeparableConv1D",
    "SeparableConv2D",
    "SeparableConvolution1D",
    "SeparableConvolution2D",
    "SimpleRNN",
    "SimpleRNNCell",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "StackedRNNCells",
    "Subtract",
    "TensorOp",
    "TimeDistributed",
    "TorchModuleWrapper",
    "UnitNormalization",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "add",
    "average",
    "concatenate",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]
